# Paths, the model registry derived from config, and input functions shared by every rule file.
import dataclasses
import json
import os
import re

from edad_core.engine import TrainConfig
from edad_core.ner_data import benchmark_files
from edad_core.registry import (PUBLISHED, build_registry, distill_teacher_row, model_source, timed_runs,
                                unavailable_reason)

RESULTS = config["results"]
WORK = config["work"]
SCRIPTS = os.path.join(workflow.basedir, "workflow_scripts")
MIRROR = config["mirror"] or os.environ.get("EDAD_MIRROR", "")
if MIRROR:  # set for the jobs, which look up checkpoints there too (edad_core.download.resolve_model); not a
    # param: where a file comes from changes no result
    os.environ.update(EDAD_MIRROR=os.path.abspath(MIRROR))
CONDA_ENV = "../envs/edad.yaml"


def alternatives(names):
    """A wildcard constraint matching exactly the configured names (an empty list matches nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def as_json(value):
    """A config value as one shell-safe JSON argument (params change -> rerun)."""
    return json.dumps(value, sort_keys=True)


# ---- model registry: which vocabulary and which teacher each training run uses --------------------------------
ADAPT_VOCAB = {"biobert": "base", "scibert": "domain", "exbert": "extended"}


# ---- models: the rows of Tables 1-4 (edad_core.registry) and the published checkpoints of Table 3 ---------------
REGISTRY = build_registry(config)
PUBLISHED_SPEC = {gd: config["models"].get("published", {}).get(name) for name, gd in PUBLISHED.items()}


def teacher_vocab(teacher):
    """Vocabulary of a distillation teacher: `bert` is the base checkpoint itself, a published one (pub_*) its own
    tokenizer's, the others are adapted."""
    if teacher == "bert":
        return "base"
    return teacher if teacher in PUBLISHED_SPEC else ADAPT_VOCAB[teacher]


def teacher_model(teacher):
    """The teacher folder (or checkpoint spec) GD reads."""
    return model_source(REGISTRY[distill_teacher_row(teacher)], RESULTS)


def published_unavailable(spec):
    """Why a published checkpoint is skipped, or None; decided without the network (edad_core.registry)."""
    return unavailable_reason(spec, config["models"]["fetch_published"], MIRROR)


def skip_reason(name):
    """Why a row cannot be built here (its published checkpoint is skipped), or None."""
    row = REGISTRY[name]
    return published_unavailable(row.hub) if row.hub else None


def finetune_source(w):
    """The model a fine-tuning job starts from: a workflow folder (a task-distilled row's is per dataset and seed),
    or a checkpoint spec (edad_core.registry.model_source)."""
    return model_source(REGISTRY[w.model], RESULTS, w.dataset, w.seed)


def finetune_settings(**overrides):
    """config finetune as edad_core.ner reads it (params: a change reruns the jobs)."""
    return {**{k: v for k, v in config["finetune"].items() if k not in ("seeds", "models", "threads")}, **overrides}


def finetune_tokenizer(name):
    """A published checkpoint is fine-tuned with its tokenizer as rule vocab_published builds it, in its configured
    casing (a hub repo without tokenizer_config.json, as BioBERT v1.1's, would load lowercased); every other row
    with its own ('')."""
    return f"{RESULTS}/vocab/{PUBLISHED[name]}" if name in PUBLISHED else ""


def distill_teachers():
    """The configured GD teachers whose checkpoint can be had (a published one may not be, offline)."""
    teachers = config["train"]["distill"]["teachers"]
    return [t for t in teachers if t not in PUBLISHED_SPEC or
            (PUBLISHED_SPEC[t] is not None and published_unavailable(PUBLISHED_SPEC[t]["hub"]) is None)]


def launcher():
    """`python` for one process, torchrun for DDP (`--standalone` picks a free rendezvous port)."""
    nproc = config["train"]["processes"]
    if nproc == 1:
        return "python"
    return f"python -m torch.distributed.run --standalone --nproc-per-node {nproc}"


def model_files(folder):
    return [f"{folder}/config.json", f"{folder}/model.safetensors", f"{folder}/vocab.txt"]


# TrainConfig's fields, read from config.train (shared) and config.train.<stage> (per stage, wins); a value
# given per variant ({biobert: constant, ...}) is picked for the run's variant.
TRAIN_KEYS = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("output_dir", "work_dir")]


def run_description(stage, variant, repeat=0):
    """Everything a training run computes from, built once: the rule passes it as one JSON `run` param (a change
    reruns the job) and the run fingerprints its checkpoint folder with it (edad_core.stages.run_training).
    A timing repeat (repeat >= 1) computes the same run again for its train_seconds only: no models, no
    checkpoint kept."""
    merged = {**config["train"], **config["train"][stage]}
    settings = {k: merged[k] for k in TRAIN_KEYS if k in merged}
    settings = {k: v[variant] if isinstance(v, dict) and variant in v else v for k, v in settings.items()}
    models = config["models"]
    mlm_probability = config["pretrain_data"]["mlm_probability"]
    if stage == "adapt":
        run = {"method": variant, "teacher": models["teacher"], "mlm_probability": mlm_probability}
    elif stage == "distill":
        run = {"teacher_model": teacher_model(variant), "student": models["student"]}
    else:
        run = {"schedule": variant, "teacher": models["teacher"], "student": models["student"],
               "mlm_probability": mlm_probability}
    if repeat:
        run["repeat"] = repeat
        settings["keep_final_checkpoint"] = False
    return {"stage": stage, **run, "train": settings}


TD = config["task_distill"]
TD_STUDENTS = [n.removesuffix("_TD") for n, row in REGISTRY.items() if row.task_runs]


def task_distill_description(w):
    """Everything a task distillation computes from (its work folder's fingerprint with the inputs' checksums)."""
    choices = ("optimizer", "adam_eps", "weight_decay", "max_grad_norm", "clip_mode", "precision")
    settings = {k: v for k, v in TD.items() if k not in ("rows", "teacher", "threads")}
    settings.update({k: config["train"][k] for k in choices})
    settings.update({k: config["finetune"][k] for k in ("max_length", "group_by_length")})
    return {"stage": "task_distill", "row": f"{w.student}_TD", "teacher": TD["teacher"], "dataset": w.dataset,
            "seed": int(w.seed), "settings": settings}


def train_params(stage, variant, repeat=False):
    """Params of every training rule (the launcher, the run description, the folders)."""
    return dict(
        launch=launcher(),
        run=lambda w: as_json(run_description(stage, w[variant], int(w.repeat) if repeat else 0)),
        data_dir=lambda w, input: os.path.dirname(input.data),
        tokenizer_dir=lambda w, input: os.path.dirname(input.tokenizer),
        out_dir=lambda w, output: os.path.dirname(output.summary),
        work_dir=lambda w, output: os.path.join(WORK, os.path.relpath(os.path.dirname(output.summary), RESULTS)),
    )


def training_targets():
    train = config["train"]
    targets = [f"{RESULTS}/train/adapt_{m}/train_summary.json" for m in train["adapt"]["methods"]]
    targets += [f"{RESULTS}/train/gd_{t}/train_summary.json" for t in distill_teachers()]
    targets += [f"{RESULTS}/train/edad_{s}/train_summary.json" for s in train["edad"]["schedules"]]
    return targets


def training_runs():
    """The names of the configured training runs (adapt_exbert, gd_bert, edad_linear, ...)."""
    return [os.path.basename(os.path.dirname(t)) for t in training_targets()]


def timing_repeat_summaries(run):
    """train_summary.json of repeats 1 .. train.timing_repeats - 1 of `run` (the run itself is repeat 0), when a
    table reports its hours (edad_core.registry.timed_runs); none otherwise."""
    if run not in timed_runs(REGISTRY):
        return []
    return [f"{RESULTS}/timing/{run}/repeat{k}/train_summary.json" for k in range(1, config["train"]["timing_repeats"])]


def timing_targets():
    return [summary for run in training_runs() for summary in timing_repeat_summaries(run)]


def ner_dataset_spec(item):
    """(name, spec) of one `ner.datasets` entry: a benchmark name under ner.base_url (sha256 pinned in
    ner.sha256), or a user's dataset {name, train, devel, test, [token_column, tag_column, sha256]}."""
    ner = config["ner"]
    if isinstance(item, str):
        files = benchmark_files(ner["base_url"], item, ner["splits"])
        sha256 = {s: (ner["sha256"] or {}).get(f"{item}/{s}.tsv") for s in ner["splits"]}
        return item, {"files": files, "sha256": sha256, "token_column": 0, "tag_column": -1}
    files = {s: item[s] for s in ner["splits"]}
    return item["name"], {"files": files, "sha256": {s: (item.get("sha256") or {}).get(s) for s in ner["splits"]},
                          "token_column": item.get("token_column", 0), "tag_column": item.get("tag_column", -1)}


NER_DATASETS = dict(ner_dataset_spec(item) for item in config["ner"]["datasets"])


def ner_targets():
    return [f"{RESULTS}/ner/{d}/labels.json" for d in NER_DATASETS]


def finetune_models():
    """config finetune.models (row names, checked by edad_core.config_checks; [] = none), or when null every row of
    Tables 1-4; and the task-distilled rows (task_distill.rows)."""
    names = config["finetune"]["models"]
    names = [n for n, row in REGISTRY.items() if set(row.tables) & {1, 2, 3, 4}] if names is None else names
    return names + [n for n, row in REGISTRY.items() if row.task_runs and n not in names]


def finetune_targets():
    """result.json of every model x dataset x seed; a model that cannot be had: its skipped.json."""
    targets = []
    for name in finetune_models():
        if skip_reason(name):
            targets.append(f"{RESULTS}/finetune/{name}/skipped.json")
            continue
        targets += [f"{RESULTS}/finetune/{name}/{d}/seed{s}/result.json"
                    for d in NER_DATASETS for s in config["finetune"]["seeds"]]
    return targets


def final_targets():
    return (ner_targets() + training_targets() + timing_targets() + finetune_targets() + report_targets()
            + export_targets())  # rules/export_inputs.smk
