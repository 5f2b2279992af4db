"""Rules adapt / distill / edad: one training run on the engine (plain `python` or under torchrun)."""

import argparse
import json

from edad_core.engine import TrainConfig
from edad_core.stages import ADAPT_METHODS, run_adapt, run_distill, run_edad
from edad_core.schedules import SCHEDULES

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("stage", choices=["adapt", "distill", "edad"])
p.add_argument("--method", choices=ADAPT_METHODS, help="adapt: biobert | scibert | exbert")
p.add_argument("--teacher", help="distill: an adapted teacher folder, or a plain BERT hub id / folder")
p.add_argument("--schedule", choices=SCHEDULES, help="edad: alpha schedule")
p.add_argument("--base", help="adapt / edad: the base BERT checkpoint (hub id, folder or pkg:module/path)")
p.add_argument("--models", required=True, type=json.loads,
               help="JSON of the parts of config `models` the stage uses (teacher and/or student)")
p.add_argument("--settings", required=True, type=json.loads, help="JSON: TrainConfig fields + mlm_probability")
p.add_argument("--data", required=True, help="pretraining examples folder (meta.json)")
p.add_argument("--tokenizer", required=True, help="tokenizer folder (vocab.txt)")
p.add_argument("--output", required=True, help="folder for the final models, metrics.jsonl, train_summary.json")
p.add_argument("--work", required=True, help="checkpoint folder (kept across failed runs: resume)")
args = p.parse_args()

settings = dict(args.settings)
mlm_probability = settings.pop("mlm_probability")
train = TrainConfig(output_dir=args.output, work_dir=args.work, **settings)
if args.stage in ("adapt", "edad"):
    extension = {k: v for k, v in args.models["teacher"].items() if k.startswith("ext_")}
if args.stage == "adapt":
    summary = run_adapt(args.method, args.base, extension, args.data, args.tokenizer, train, mlm_probability)
elif args.stage == "distill":
    summary = run_distill(args.teacher, args.models["student"], args.data, args.tokenizer, train)
else:
    summary = run_edad(args.schedule, args.base, extension, args.models["student"], args.data, args.tokenizer,
                       train, mlm_probability)
print(json.dumps(summary, indent=2))
