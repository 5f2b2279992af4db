"""Rule ner_data: download, validate and write one NER dataset (see edad_core.ner_data.prepare_ner_dataset)."""

import argparse
import json

from edad_core.log import setup_logging
from edad_core.ner_data import prepare_ner_dataset

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--dataset", required=True, help="folder name under --base-url, e.g. BC5CDR-IOB")
p.add_argument("--base-url", required=True)
p.add_argument("--splits", nargs="+", required=True)
p.add_argument("--sha256", type=json.loads, default="{}", help='JSON {"SPLIT": "HEX" or null}')
p.add_argument("--mirror", default="", help="mirror folder ('' = env EDAD_MIRROR or none)")
p.add_argument("--repair", action="store_true", help="turn an I- after O or another type into B-")
p.add_argument("--max-sentences", type=int, default=None)
p.add_argument("--download-dir", required=True)
p.add_argument("--out-dir", required=True)
args = p.parse_args()
setup_logging()

summary = prepare_ner_dataset(
    args.dataset,
    base_url=args.base_url,
    splits=args.splits,
    out_dir=args.out_dir,
    download_dir=args.download_dir,
    sha256=args.sha256,
    mirror=args.mirror,
    repair=args.repair,
    max_sentences=args.max_sentences,
)
print(json.dumps(summary, indent=2))
