# Input functions and the model list of the report rules (rules/report.smk). Needs from rules/common.smk: RESULTS,
# REGISTRY, training_runs, timing_repeat_summaries, finetune_models, skip_reason. Which
# row goes in which table under which label is the registry's (edad_core/registry.py); these functions pass it on.
from edad_core.registry import TABLES, TASK_DISTILLED, TASK_TABLE, table_layout

PLOTS = f"{RESULTS}/plots"
STAGES = {"adapt": "adapt_", "distill": "gd_", "edad": "edad_"}  # stage -> its runs' name prefix


def model_location(name):
    """Where a row's model is (edad_core.registry.model_source); a task-distilled row's taggers (one per dataset
    and seed) have its student's architecture."""
    row = REGISTRY[name]
    if row.task_runs:
        return model_location(name.removesuffix(TASK_DISTILLED))
    return model_source(row, RESULTS)


def report_models(names=None):
    """The registry's table rows (or `names`) in the form edad_core.report expects: name -> {role, train_runs
    (their train_seconds make its time cost), published_hours, skipped (the reason, or None), finetuned (in
    finetune.models), folder, teacher_folder (a student's teacher: TinyBERT's projection is counted)}."""
    finetuned = set(finetune_models())
    models = {}
    for name, row in REGISTRY.items():
        if not row.tables or (names is not None and name not in names):
            continue
        models[name] = {"role": row.role, "train_runs": list(row.train_runs), "published_hours": row.published_hours,
                        "skipped": skip_reason(name), "finetuned": name in finetuned, "folder": model_location(name),
                        "teacher_folder": model_location(row.teacher) if row.teacher else None,
                        **({"task_runs": list(row.task_runs)} if row.task_runs else {})}
    return models


def report_layouts():
    """Table number -> [[row label, model name or None], ...] in the paper's order (edad_core.registry); Table 6
    when task_distill.rows names a student."""
    extra = [TASK_TABLE] if any(row.task_runs for row in REGISTRY.values()) else []
    return {n: table_layout(REGISTRY, n) for n in (*TABLES, *extra)}


def counted_configs():
    """config.json of every table row made here and of its teacher: Tables 1-3 count their parameters."""
    folders = {f for m in report_models().values() if not m["skipped"]
               for f in (m["folder"], m["teacher_folder"]) if f and f.startswith(f"{RESULTS}/")}
    return sorted(f"{f}/config.json" for f in folders)


def timing_summaries():
    """Run name -> train_summary.json of repeat 0 (the run itself), then of the timing repeats 1, ... of a run
    whose hours a table reports (train.timing_repeats); a task distillation run -> its summary of every dataset and
    seed."""
    summaries = {run: [f"{RESULTS}/train/{run}/train_summary.json"] + timing_repeat_summaries(run)
                 for run in training_runs()}
    for run in dict.fromkeys(run for row in REGISTRY.values() for run in row.task_runs):  # per dataset and seed
        summaries[run] = [f"{RESULTS}/train/{run}/{d}/seed{s}/train_summary.json"
                          for d in NER_DATASETS for s in config["finetune"]["seeds"]]
    return summaries


def stage_curves():
    """PNG of each stage's training curves -> {run: metrics.jsonl} (stages with no run are left out)."""
    curves = {}
    for stage, prefix in STAGES.items():
        mine = {r: f"{RESULTS}/train/{r}/metrics.jsonl" for r in training_runs() if r.startswith(prefix)}
        if mine:
            curves[f"{PLOTS}/training_{stage}.png"] = mine
    return curves


def report_targets():
    return ([f"{RESULTS}/table{n}.{ext}" for n in (*report_layouts(), 5) for ext in ("csv", "md")]
            + [f"{RESULTS}/claims.{ext}" for ext in ("csv", "md")]
            + [f"{PLOTS}/f1_vs_time.png", f"{PLOTS}/alpha_schedules.png", *stage_curves()]
            + [f"{RESULTS}/export/EDAD"])
