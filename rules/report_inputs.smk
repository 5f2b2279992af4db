# Input functions and the model list of the report rules (rules/report.smk). Needs from rules/common.smk: RESULTS,
# training_targets. The lead's model registry (edad_core/registry.py) can replace report_models().

TEACHER_NAMES = {"bert": "BERT", "biobert": "oiBioBERT", "scibert": "oiSciBERT", "exbert": "exBERT"}
PLOTS = f"{RESULTS}/plots"
STAGES = {"adapt": "adapt_", "distill": "gd_", "edad": "edad_"}  # stage -> its runs' name prefix


def report_models():
    """Every model the workflow trains or takes, in the form edad_core.report expects: name -> {role, train_runs
    (their train_seconds make its time cost), published_hours, tables ({table number: row label}), folder}."""
    train, paper_schedule = config["train"], config["report"]["edad_schedule"]
    models = {"BERT": {"role": "teacher", "train_runs": [], "published_hours": None, "tables": {1: "BERT"},
                       "folder": config["models"]["teacher"]["base"]}}
    for method in train["adapt"]["methods"]:
        models[TEACHER_NAMES[method]] = {"role": "teacher", "train_runs": [f"adapt_{method}"], "published_hours": None,
                                         "tables": {1: TEACHER_NAMES[method]},
                                         "folder": f"{RESULTS}/train/adapt_{method}/teacher"}
    for teacher in train["distill"]["teachers"]:
        name = f"{TEACHER_NAMES[teacher]}_GD"
        models[name] = {"role": "student", "published_hours": None,
                        "train_runs": ([] if teacher == "bert" else [f"adapt_{teacher}"]) + [f"gd_{teacher}"],
                        "tables": {1: name, 2: name} if teacher == "exbert" else {1: name},
                        "folder": f"{RESULTS}/train/gd_{teacher}/student"}
    for schedule in train["edad"]["schedules"]:
        tables = {4: schedule, **({2: "EDAD", 3: "EDAD"} if schedule == paper_schedule else {})}
        models[f"EDAD_{schedule}"] = {"role": "student", "train_runs": [f"edad_{schedule}"], "published_hours": None,
                                      "tables": tables, "folder": f"{RESULTS}/train/edad_{schedule}/student"}
    return models


def finetune_results(models, datasets, seeds):
    """result.json of every model x dataset x seed (rule finetune)."""
    return [f"{RESULTS}/finetune/{m}/{d}/seed{s}/result.json" for m in models for d in datasets for s in seeds]


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
