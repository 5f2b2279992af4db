"""Rules vocab_base / vocab_extended / vocab_domain: one tokenizer folder per vocabulary (see edad_core.vocab)."""

import argparse
import json
from pathlib import Path

from edad_core.log import setup_logging
from edad_core.vocab import (
    build_base_vocab,
    build_domain_only_vocab,
    build_extended_vocab,
    build_extended_vocab_from_file,
)

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("kind", choices=["base", "extended", "domain"])
p.add_argument("--out", required=True, help="output folder")
p.add_argument("--corpus", nargs="+", default=[], help="corpus text files (extended, domain)")
p.add_argument("--extension-file", help="extended: vocab.extension_file, the whole extended vocab (path or URL)")
p.add_argument("--mirror", default="", help="with --extension-file: mirror folder ('' = env EDAD_MIRROR or none)")
p.add_argument("--base", help="models.teacher.base: hub id, local folder or pkg:<module>/<path> (base, extended)")
p.add_argument("--ext-size", type=int, help="extended: vocab.ext_size")
p.add_argument("--total-size", type=int, help="extended: vocab.total_size")
p.add_argument("--domain-size", type=int, help="domain: vocab.domain_only_size")
p.add_argument("--min-frequency", type=int, help="extended, domain: vocab.min_frequency")
p.add_argument("--lowercase", action=argparse.BooleanOptionalAction, required=True, help="vocab.lowercase")
args = p.parse_args()
setup_logging()
if args.kind != "domain" and not args.base:
    p.error(f"{args.kind} needs --base")
from_file = args.kind == "extended" and args.extension_file
if args.kind != "base" and not from_file and not args.corpus:
    p.error(f"{args.kind} needs --corpus" + (" or --extension-file" if args.kind == "extended" else ""))
needed = {"base": [], "extended": ["total_size"] if from_file else ["ext_size", "total_size", "min_frequency"],
          "domain": ["domain_size", "min_frequency"]}
if missing := [f"--{key.replace('_', '-')}" for key in needed[args.kind] if getattr(args, key) is None]:
    p.error(f"{args.kind} needs {' '.join(missing)}")

if args.kind == "base":
    out = build_base_vocab(args.base, args.out, lowercase=args.lowercase)
elif from_file:
    out = build_extended_vocab_from_file(args.extension_file, args.base, args.out, total_size=args.total_size,
                                         lowercase=args.lowercase, mirror=args.mirror)
elif args.kind == "extended":
    out = build_extended_vocab(args.corpus, args.base, args.out, ext_size=args.ext_size, total_size=args.total_size,
                               lowercase=args.lowercase, min_frequency=args.min_frequency)
else:
    out = build_domain_only_vocab(args.corpus, args.out, size=args.domain_size, lowercase=args.lowercase,
                                  min_frequency=args.min_frequency)
print(json.dumps(json.loads((Path(out) / "vocab_stats.json").read_text()), indent=2, ensure_ascii=False))
