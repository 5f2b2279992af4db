"""Rule corpus: build the N-token domain corpus, its stats and manifest (see edad_core.corpus.build_corpus)."""

import argparse
import json

from edad_core.corpus import build_corpus
from edad_core.log import setup_logging


def n_tokens(value: str) -> int | None:
    return None if value == "all" else int(value)


p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--sources", type=json.loads, required=True, help="JSON list: config corpus.sources")
p.add_argument("--n-tokens", type=n_tokens, required=True, help="whitespace tokens in the subset, or 'all'")
p.add_argument("--max-bad-fraction", type=float, required=True, help="corpus.max_bad_fraction")
p.add_argument("--exclude", type=json.loads, required=True, help="JSON list: corpus.exclude")
p.add_argument("--mirror", default="", help="mirror folder ('' = env EDAD_MIRROR or none)")
p.add_argument("--cache-dir", required=True, help="downloaded documents (reused by a rerun)")
p.add_argument("--out", required=True, help="corpus text: one sentence per line, blank line between documents")
p.add_argument("--stats", required=True)
p.add_argument("--manifest", required=True)
args = p.parse_args()
setup_logging()

stats = build_corpus(
    args.sources, args.out, args.stats, args.manifest, n_tokens=args.n_tokens, mirror=args.mirror, cache_dir=args.cache_dir,
    max_bad_fraction=args.max_bad_fraction, exclude=args.exclude,
)
print(json.dumps({k: v for k, v in stats.items() if k != "sources"}, indent=2))
