"""Rule pretrain_data: BERT sentence-pair examples of the corpus for one vocabulary (see edad_core.pretrain_data)."""

import argparse
import json

from edad_core.log import setup_logging
from edad_core.pretrain_data import create_examples

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--corpus", required=True, help="one sentence per line, a blank line between documents")
p.add_argument("--tokenizer-dir", required=True)
p.add_argument("--out-dir", required=True)
p.add_argument("--max-seq-length", type=int, required=True)
p.add_argument("--short-seq-prob", type=float, required=True)
p.add_argument("--random-next-prob", type=float, required=True)
p.add_argument("--dupe-factor", type=int, required=True)
p.add_argument("--seed", type=int, required=True)
p.add_argument("--chunk-sentences", type=int, required=True)
p.add_argument("--num-proc", type=int, required=True)
args = p.parse_args()
setup_logging()

meta = create_examples(
    args.corpus, args.tokenizer_dir, args.out_dir, max_seq_length=args.max_seq_length,
    short_seq_prob=args.short_seq_prob, random_next_prob=args.random_next_prob, dupe_factor=args.dupe_factor,
    seed=args.seed, num_proc=args.num_proc, chunk_sentences=args.chunk_sentences,
)
print(json.dumps(meta, indent=2))
