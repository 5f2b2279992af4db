"""Rule task_distill: TinyBERT's task distillation of a fine-tuned teacher into a pretrained student on one NER
dataset (edad_core.task_distill)."""

import argparse
import json
from pathlib import Path

from edad_core.log import setup_logging
from edad_core.task_distill import run_task_distill

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--description", required=True, type=json.loads, help="JSON run description (row, dataset, seed, settings)")
p.add_argument("--data", required=True, help="the ner_data rule's folder (train.tsv, labels.json)")
p.add_argument("--teacher", required=True, help="the teacher fine-tuned on this dataset (finetune ... /model)")
p.add_argument("--teacher-result", required=True, help="the teacher's result.json (its fine-tuning seconds)")
p.add_argument("--student", required=True, help="the pretrained student's folder")
p.add_argument("--corpus", default="", help="corpus.txt, for task_distill.unlabelled_sentences ('' = none)")
p.add_argument("--output", required=True, help="student/, metrics-<phase>.jsonl, train_summary.json")
p.add_argument("--work", required=True, help="checkpoints of both phases (kept across failed runs: resume)")
args = p.parse_args()
setup_logging()

teacher_seconds = json.loads(Path(args.teacher_result).read_text())["train_seconds"]
summary = run_task_distill(args.description, data_dir=args.data, teacher_dir=args.teacher, student_dir=args.student,
                           output_dir=args.output, work_dir=args.work, corpus=args.corpus or None,
                           teacher_seconds=teacher_seconds)
print(json.dumps({k: v for k, v in summary.items() if k != "phases"}, indent=2))
