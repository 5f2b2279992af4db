"""Rules tables / table5 / plots / export_student (rules/report.smk): the paper's tables, Table 5, the figures and
the exported EDAD student, each one call into edad_core.report, edad_core.plots or edad_core.hub."""

import argparse
import json
from pathlib import Path

import pandas as pd

from edad_core import plots, report
from edad_core.hub import export_for_hub
from edad_core.log import setup_logging

p = argparse.ArgumentParser(description=__doc__)
sub = p.add_subparsers(dest="command", required=True)
t = sub.add_parser("tables", help="aggregate fine-tuning results and timing; write Tables 1-4, the claims and the "
                   "summary")
t.add_argument("--results", nargs="+", required=True, help="result.json / skipped.json files of the finetune rule")
t.add_argument("--summaries", required=True, type=json.loads, help="JSON {run: [train_summary.json of repeat 0, ...]}")
t.add_argument("--models", required=True, type=lambda s: dict(json.loads(s)),
               help="JSON [[model, {role, train_runs, published_hours, skipped, finetuned, folder, teacher_folder}], "
                    "...] (in the rows' order)")
t.add_argument("--layouts", required=True, type=json.loads,
               help="JSON {table number: [[row label, model or null], ...]} (edad_core.registry.table_layout)")
t.add_argument("--datasets", required=True, type=json.loads, help="JSON list of NER dataset names")
t.add_argument("--out-dir", required=True, help="table{1..4}.csv/.md go here")
t.add_argument("--summary", required=True, help="the aggregated numbers, one row per model (CSV)")
t.add_argument("--claims", required=True, help="output stem of the claims' comparisons and verdicts: .csv and .md")
f = sub.add_parser("table5", help="size, inference throughput and average F1 of every model, and the "
                   "exported taggers' speed per backend")
f.add_argument("--folders", required=True, type=lambda s: dict(json.loads(s)),
               help="JSON [[model, model folder or spec], ...] (in the rows' order)")
f.add_argument("--summary", required=True, help="the tables command's summary CSV")
f.add_argument("--sentences", required=True, help="a NER split (TSV) to sample sentences from")
f.add_argument("--settings", required=True, type=json.loads, help="JSON config report.throughput")
f.add_argument("--exports", required=True, type=json.loads, help="JSON list of rule export_ner's tagger folders "
               "(their speed.json)")
f.add_argument("--out", required=True, help="output stem: .csv and .md")
g = sub.add_parser("plots", help="F1 vs time cost, alpha schedules, training curves per stage")
g.add_argument("--summary", required=True)
g.add_argument("--curves", required=True, type=json.loads, help="JSON {png path: {run: metrics.jsonl}}")
g.add_argument("--f1-vs-time", required=True)
g.add_argument("--schedules", required=True)
e = sub.add_parser("export", help="a model folder plus its code, loadable with transformers alone")
e.add_argument("--model", required=True)
e.add_argument("--out", required=True)
args = p.parse_args()
setup_logging()

if args.command == "tables":
    runs, skipped = report.load_runs(args.results)
    seconds = report.run_seconds(args.summaries)
    summary = report.aggregate(runs, args.models, seconds, args.datasets, params=report.paper_params(args.models),
                               devices=report.run_devices(args.summaries))
    for number, layout in args.layouts.items():
        table = report.paper_table(int(number), summary, layout, args.models, skipped, args.datasets)
        report.write_table(table, Path(args.out_dir) / f"table{number}", report.table_caption(int(number), summary,
                                                                                              layout))
    report.write_claims(*report.claims(runs, seconds, args.models, args.layouts, args.datasets), args.claims)
    report.write_summary(summary, args.summary)
elif args.command == "table5":
    summary = pd.read_csv(args.summary, index_col="model")
    s = args.settings
    sentences = report.sample_sentences(args.sentences, s["sentences"], s["seed"])
    table = report.table5(args.folders, summary, sentences, batch_size=s["batch_size"], max_length=s["max_length"],
                          repeats=s["repeats"])
    tagging = [json.loads((Path(folder) / "speed.json").read_text()) for folder in args.exports]
    report.write_table5(table, tagging, args.out)
elif args.command == "plots":
    summary = pd.read_csv(args.summary, index_col="model")
    plots.f1_vs_time(summary, args.f1_vs_time)
    plots.alpha_schedules(args.schedules)
    for png, runs in args.curves.items():
        plots.training_curves(runs, png)
else:
    export_for_hub(args.model, args.out)
