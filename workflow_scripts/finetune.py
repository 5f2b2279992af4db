"""Rule finetune: fine-tune one model on one NER dataset with one seed and evaluate it (edad_core.ner)."""

import argparse
import json

from edad_core.log import setup_logging
from edad_core.ner import finetune_and_evaluate

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--name", required=True, help="the model's row name (edad_core.registry)")
p.add_argument("--model", required=True, help="workflow model folder, local BERT folder, hub id or pkg:<module>/<path>")
p.add_argument("--tokenizer", default="", help="tokenizer folder when not the model's own ('' = the model's)")
p.add_argument("--role", required=True, choices=["teacher", "student"], help="sets the epochs")
p.add_argument("--dataset", required=True)
p.add_argument("--data", required=True, help="the ner_data rule's folder (train/devel/test.tsv, labels.json)")
p.add_argument("--seed", required=True, type=int)
p.add_argument("--settings", required=True, type=json.loads, help="JSON: config finetune")
p.add_argument("--output", required=True, help="result.json, predictions-{devel,test}.conll, metrics.jsonl")
p.add_argument("--work", required=True, help="checkpoints (removed when the run ends)")
args = p.parse_args()
setup_logging()

result = finetune_and_evaluate(name=args.name, source=args.model, role=args.role, dataset=args.dataset,
                               data_dir=args.data, seed=args.seed, settings=args.settings, output_dir=args.output,
                               work_dir=args.work, tokenizer_source=args.tokenizer or None)
print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=2))
