"""Rule ner_data: download, validate and write one NER dataset (see edad_core.ner_data.prepare_ner_dataset)."""

import argparse
import json

from edad_core.log import setup_logging
from edad_core.ner_data import prepare_ner_dataset

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--dataset", required=True, help="the dataset's name (a benchmark folder or a user dataset)")
p.add_argument("--spec", type=json.loads, required=True,
               help='JSON {"files": {SPLIT: URL or path}, "sha256": {SPLIT: HEX or null}, "token_column": N, '
                    '"tag_column": N} (rules/common.smk ner_dataset_spec)')
p.add_argument("--mirror", required=True, help="mirror folder ('' = env EDAD_MIRROR or none)")
p.add_argument("--repair", choices=["true", "false"], required=True, help="ner.repair_iob")
p.add_argument("--max-sentences", required=True, help="ner.max_sentences: a number or 'all'")
p.add_argument("--download-dir", required=True)
p.add_argument("--out-dir", required=True)
args = p.parse_args()
setup_logging()

summary = prepare_ner_dataset(
    args.dataset,
    files=args.spec["files"],
    sha256=args.spec["sha256"],
    token_column=args.spec["token_column"],
    tag_column=args.spec["tag_column"],
    out_dir=args.out_dir,
    download_dir=args.download_dir,
    mirror=args.mirror,
    repair=args.repair == "true",
    max_sentences=None if args.max_sentences == "all" else int(args.max_sentences),
)
print(json.dumps(summary, indent=2))
