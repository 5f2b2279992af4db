"""Rule export_ner (rules/export.smk): pick the seed, fetch the speed documents, then one call into edad_core.export."""

import argparse
import json
from pathlib import Path

from edad_core.export import export_ner, median_seed, speed_documents
from edad_core.log import setup_logging

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--results", nargs="+", required=True, help="result.json of every seed of one model x dataset")
p.add_argument("--seed", required=True, help="a seed, or 'median' (median devel entity F1)")
p.add_argument("--summary", required=True, help="report/summary.csv (rule tables)")
p.add_argument("--test", required=True, help="the dataset's test.tsv")
p.add_argument("--corpus-stats", required=True, help="corpus/stats.json (rule corpus)")
p.add_argument("--datasets", required=True, type=json.loads, help="JSON list of every NER dataset (the card's table)")
p.add_argument("--provenance", required=True, type=json.loads, help="JSON: teacher, student, sources, threads")
p.add_argument("--command", required=True, help="the command that makes this export (shown in the card)")
p.add_argument("--onnx", required=True, type=json.loads, help="JSON true/false: write model.onnx and model.int8.onnx")
p.add_argument("--speed", required=True, type=json.loads,
               help="JSON export.ner.speed: urls, url_file, documents, rounds, threads, batch_size")
p.add_argument("--mirror", default="", help="the mirror folder ('' for none)")
p.add_argument("--cache-dir", required=True, help="download cache of the speed documents")
p.add_argument("--out", required=True)
args = p.parse_args()
setup_logging()

runs = {json.loads(Path(r).read_text())["seed"]: Path(r).parent for r in args.results}
seed = median_seed([json.loads(Path(r).read_text()) for r in args.results]) if args.seed == "median" else int(args.seed)
provenance = {**args.provenance, "corpus_stats": json.loads(Path(args.corpus_stats).read_text())}
documents, source = speed_documents(args.speed, mirror=args.mirror, cache_dir=args.cache_dir)
export_ner(result_dir=runs[seed], summary_csv=args.summary, test_tsv=args.test, out_dir=args.out,
           datasets=args.datasets, provenance=provenance, command=args.command, onnx=args.onnx,
           speed={**args.speed, "source": source}, speed_documents=documents)
