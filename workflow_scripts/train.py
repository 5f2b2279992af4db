"""Rules adapt / distill / edad: one training run on the engine (plain `python` or under torchrun), from the run
description the workflow builds (rules/common.smk `run_description`; see edad_core.stages.run_training)."""

import argparse
import json

from edad_core.log import setup_logging
from edad_core.stages import run_training

p = argparse.ArgumentParser(description=__doc__)
# not --run: torchrun would take it for an abbreviation of its own --run-path
p.add_argument("--description", required=True, type=json.loads, help="JSON run description (stage, models, train)")
p.add_argument("--data", required=True, help="pretraining examples folder (meta.json)")
p.add_argument("--tokenizer", required=True, help="tokenizer folder (vocab.txt)")
p.add_argument("--output", required=True, help="folder for the final models, metrics.jsonl, train_summary.json")
p.add_argument("--work", required=True, help="checkpoint folder (kept across failed runs: resume)")
args = p.parse_args()
setup_logging()

summary = run_training(args.description, data_dir=args.data, tokenizer_dir=args.tokenizer, output_dir=args.output,
                       work_dir=args.work)
print(json.dumps(summary, indent=2))
