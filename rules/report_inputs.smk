# Input functions and the model list of the report rules (rules/report.smk). Needs from rules/common.smk: RESULTS,
# training_targets, REGISTRY, finetune_models, finetune_targets.

PLOTS = f"{RESULTS}/plots"
STAGES = {"adapt": "adapt_", "distill": "gd_", "edad": "edad_"}  # stage -> its runs' name prefix


def report_models(names=None):
    """The registry's table rows (or `names`) in the form edad_core.report expects: name -> {role, train_runs
    (their train_seconds make its time cost), published_hours, tables ({table number: row label}), folder}. The
    EDAD student of report.edad_schedule is Tables 2-3's "EDAD"; Table 4's rows are the schedules."""
    paper_schedule = config["report"]["edad_schedule"]
    models = {}
    for name, row in REGISTRY.items():
        if not row.tables or (names is not None and name not in names):
            continue
        schedule = name.removeprefix("EDAD_") if name.startswith("EDAD_") else None
        tables = {n: name for n in row.tables if n != 4 and schedule is None}
        if schedule is not None:
            tables = {4: schedule, **({2: "EDAD", 3: "EDAD"} if schedule == paper_schedule else {})}
        models[name] = {"role": row.role, "train_runs": list(row.train_runs), "published_hours": row.published_hours,
                        "tables": tables, "skipped": skip_reason(name),
                        "folder": f"{RESULTS}/{row.source}" if row.workflow_made else row.source}
    return models


def timing_summaries():
    """Run name -> train_summary.json of repeat 0 (the run itself), 1, ... (train.timing_repeats)."""
    runs = [os.path.basename(os.path.dirname(t)) for t in training_targets()]
    repeats = range(1, config["train"]["timing_repeats"])
    return {run: [f"{RESULTS}/train/{run}/train_summary.json"]
                 + [f"{RESULTS}/timing/{run}/repeat{k}/train_summary.json" for k in repeats] for run in runs}


def stage_curves():
    """PNG of each stage's training curves -> {run: metrics.jsonl} (stages with no run are left out)."""
    runs = [os.path.basename(os.path.dirname(t)) for t in training_targets()]
    curves = {}
    for stage, prefix in STAGES.items():
        mine = {r: f"{RESULTS}/train/{r}/metrics.jsonl" for r in runs if r.startswith(prefix)}
        if mine:
            curves[f"{PLOTS}/training_{stage}.png"] = mine
    return curves


def report_targets():
    return ([f"{RESULTS}/table{n}.{ext}" for n in (1, 2, 3, 4, 5) for ext in ("csv", "md")]
            + [f"{PLOTS}/f1_vs_time.png", f"{PLOTS}/alpha_schedules.png", *stage_curves()]
            + [f"{RESULTS}/export/EDAD"])
