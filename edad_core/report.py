"""The paper's Tables 1-4 from the workflow's results, with the paper's figures beside ours, Table 5 (size and
inference speed of every model) and a verdict on the paper's claims. Decisions: docs/design.md 3 (F1 scales),
4 (time cost), 6 (intervals), 9 (parameters as the paper counts them), 10 (claims and verdicts).

    runs, skipped = load_runs(paths)                      # result.json / skipped.json of the finetune rule
    params = paper_params(models)                         # {model: parameters as the paper counts them}
    summary = aggregate(runs, models, seconds, datasets, params=params)  # one row per model: means, intervals, cost
    table = paper_table(1, summary, layout, models, skipped, datasets)  # display table; write_table(table, stem)
    comparisons, verdicts = claims(runs, seconds, models, layouts, datasets)  # write_claims(..., stem)

`models` is a plain mapping, model name -> {"role": "teacher" | "student", "train_runs": [run, ...] (their
train_seconds add up to the model's time cost), "published_hours": hours or null (a published adaptation cost
added to the measured runs: BioBERT 1104, SciBERT 672), "skipped": the reason it cannot be had or null,
"finetuned": in finetune.models, "folder": its model folder or checkpoint, "teacher_folder": a student's teacher}.
`layout` / `layouts[n]`: [(row label, model name or None), ...] of a table, from edad_core.registry.table_layout
(the registry decides which row goes in which table under which label).
`seconds`: run name -> [train_seconds of repeat 0, 1, ...] (repeat 0 is the run itself).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from transformers import AutoConfig, AutoModel, AutoTokenizer

from edad_core.download import resolve_model
from edad_core.files import atomic_files, atomic_write_text
from edad_core.losses import TinyBertLoss
from edad_core.modeling import ExBertConfig, ExBertForPreTraining
from edad_core.ner_data import read_iob
from edad_core.registry import COST_TABLES, TABLES, TASK_DISTILLED, TASK_TABLE, paper_figures
from edad_core.tagging_speed import SPEED_COLUMNS, speed_frame, speed_note

log = logging.getLogger(__name__)

# entity F1 (seqeval, the headline), macro F1 over first pieces (one prediction per word), and the authors' macro
# F1 over every labelled piece (docs/design.md decision 15), which the paper's figures are
METRICS = {"entity_f1": ("entity", "f1"), "token_f1": ("token_macro_f1",), "piece_f1": ("piece_macro_f1",)}
METRIC_TITLES = {"entity_f1": "entity F1", "token_f1": "token F1", "piece_f1": "piece F1"}
PAPER_METRIC = "piece_f1"  # our metric that the paper's figures stand beside (decision 3)
MIN_SEEDS = 3  # a figure from fewer seeds (or timing repeats) is marked with its n


def paper_dataset(name: str) -> str:
    """The paper's column name of a workflow dataset (the benchmarks' folders end in -IOB)."""
    return name.removesuffix("-IOB")


def mean_ci(values) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval, t_{0.975, n-1} * s / sqrt(n) (NaN for n < 2)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) < 2:
        return float(x[0]), math.nan
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


# ---- reading --------------------------------------------------------------------------------------------------


def _read_json(path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got a {type(data).__name__}")
    return data


KINDS = {str: "a string", int: "an integer", (int, float): "a number"}


def _field(data: dict, name: str, path, kind: type | tuple):
    """data[a][b]... for name 'a.b...', of type `kind`, or ValueError naming the file and the field."""
    value, keys = data, name.split(".")
    for i, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"{path}: missing or bad field {'.'.join(keys[: i + 1])!r} (see edad_core/report.py "
                             "for the format)")
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, kind):  # JSON true/false are not numbers here
        raise ValueError(f"{path}: field {name!r} is {value!r}, not {KINDS[kind]}")
    return value


def _fraction(data: dict, name: str, path) -> float:
    """An F1 score: a fraction in [0, 1] (NaN, percent-scaled or negative values are refused)."""
    value = float(_field(data, name, path, (int, float)))
    if not 0 <= value <= 1:  # NaN fails too
        raise ValueError(f"{path}: {name} = {value} is not an F1 between 0 and 1 (the workflow writes fractions; "
                         "a percentage or NaN means a broken or foreign result file)")
    return value


def load_runs(paths) -> tuple[pd.DataFrame, dict[str, str]]:
    """Fine-tuning results (one row per model, dataset, seed: test and devel F1 as fractions, params) and the skip
    reasons of models that could not be had ({model: reason}) from result.json and skipped.json files. A file
    that lacks a field, has one of the wrong type, or an F1 outside [0, 1] is an error naming the file and field."""
    rows, skipped = [], {}
    for path in paths:
        data = _read_json(path)
        if "reason" in data and "metrics" not in data:  # skipped.json
            skipped[_field(data, "model", path, str)] = _field(data, "reason", path, str)
            continue
        if data.get("skipped"):
            skipped[_field(data, "name", path, str)] = _field(data, "skipped", path, str)
            continue
        row = {"model": _field(data, "name", path, str), "dataset": _field(data, "dataset", path, str),
               "seed": _field(data, "seed", path, int), "params": _field(data, "params", path, int)}
        for split in ("test", "devel"):
            for metric, keys in METRICS.items():
                row[f"{split}_{metric}"] = _fraction(data, ".".join(("metrics", split, *keys)), path)
        rows.append(row)
    runs = pd.DataFrame(rows, columns=["model", "dataset", "seed", "params"]
                        + [f"{s}_{m}" for s in ("test", "devel") for m in METRICS])
    duplicated = runs.duplicated(["model", "dataset", "seed"])
    if duplicated.any():
        raise ValueError(f"the same model, dataset and seed given twice: {runs[duplicated].iloc[0].to_dict()}")
    return runs, skipped


def run_seconds(summaries: dict[str, list]) -> dict[str, list[float]]:
    """{run: [train_summary.json of repeat 0, 1, ...]} -> {run: [train_seconds, ...]}; a train_seconds that is
    missing, NaN, infinite or negative is an error naming the file. A task distillation's summary counts its
    teacher's fine-tuning too (teacher_finetune_seconds, checked alike)."""
    out = {}
    for run, paths in summaries.items():
        out[run] = []
        for path in paths:
            data = _read_json(path)
            total = 0.0
            for key in ("train_seconds", "teacher_finetune_seconds"):
                value = data.get(key, 0.0 if key == "teacher_finetune_seconds" else None)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{path}: no numeric {key}")
                if not 0 <= value < math.inf:
                    raise ValueError(f"{path}: {key} = {value} is not a duration in seconds (finite, >= 0)")
                total += float(value)
            out[run].append(total)
    return out


def run_devices(summaries: dict[str, list]) -> dict[str, str]:
    """{run: [train_summary.json of repeat 0, 1, ...]} -> {run: "4 x NVIDIA GeForce RTX 3090, fp32"}: what each
    run's time was measured on (every distinct setup of its repeats, in order; "device not recorded" for a
    summary written before the engine recorded it)."""
    out = {}
    for run, paths in summaries.items():
        setups = []
        for path in paths:
            data = _read_json(path)
            device = f"{data['device_count']} x {data['device']}" if "device" in data else "device not recorded"
            setups.append(f"{device}, {data.get('precision', 'precision not recorded')}")
        out[run] = "; ".join(dict.fromkeys(setups))
    return out


def devices_of(runs, devices: dict[str, str]) -> str:
    """The setups the time of `runs` was measured on, once each ("" when none is known)."""
    return "; ".join(dict.fromkeys(devices[r] for r in runs if r in devices))


# ---- parameters -----------------------------------------------------------------------------------------------


def model_config(spec) -> ExBertConfig:
    """The architecture of a model folder or checkpoint spec, as an ExBertConfig (a plain BERT's is converted)."""
    config = AutoConfig.from_pretrained(resolve_model(spec))
    return config if isinstance(config, ExBertConfig) else ExBertConfig.from_bert_config(config)


def count_paper_params(config: ExBertConfig, teacher: ExBertConfig | None = None) -> int:
    """Parameters as the paper counts them (decision 9): the model with its pretraining heads (MLM and NSP), and
    for a student (`teacher` given) also TinyBERT's projection of its hidden states to the teacher's width. The
    modules are built on the meta device: shapes only, nothing allocated."""
    with torch.device("meta"):
        modules = [ExBertForPreTraining(config)]
        if teacher is not None:
            modules.append(TinyBertLoss(config.hidden_size, teacher.hidden_size, config.num_hidden_layers,
                                        teacher.num_hidden_layers))
    return sum(p.numel() for m in modules for p in m.parameters())


def paper_params(models: dict) -> dict[str, int]:
    """{model: count_paper_params} of every model that is not skipped, from its folder's (and its teacher's)
    config.json."""
    return {name: count_paper_params(model_config(entry["folder"]),
                                     model_config(entry["teacher_folder"]) if entry.get("teacher_folder") else None)
            for name, entry in models.items() if not entry.get("skipped")}


# ---- aggregation ----------------------------------------------------------------------------------------------


def time_cost(entry: dict, seconds: dict[str, list[float]], has_results: bool) -> tuple[float, float, int]:
    """Hours: mean and 95% interval over the timing repeats of a model's cost, and the repeat count. Repeat k's
    cost is the sum of repeat k of each of its runs plus the published hours; only repeats every run has are
    used. A model made by no run of ours (BERT, BioBERT) costs its published hours only when its results exist
    here (`has_results`), else NaN; a skipped model (BioBERT_GD offline) costs NaN: it was not made. A
    task-distilled row adds the mean over datasets and seeds of its `task_runs` (their teacher's fine-tuning and
    the distillation) to every repeat."""
    runs, published = entry.get("train_runs", []), entry.get("published_hours")
    if entry.get("skipped"):
        return math.nan, math.nan, 0
    if not runs:
        return (float(published) if published is not None and has_results else math.nan), math.nan, 0
    task_runs = entry.get("task_runs", [])
    published = (published or 0.0) + sum(float(np.mean(seconds[r])) for r in task_runs if seconds.get(r)) / 3600
    missing = [r for r in (*runs, *task_runs) if not seconds.get(r)]
    if missing:
        raise ValueError(f"no train_seconds for the runs {missing}")
    n = min(len(seconds[r]) for r in runs)
    if any(len(seconds[r]) != n for r in runs):
        log.warning("runs %s have unequal numbers of timing repeats; using the first %d", runs, n)
    hours = [published + sum(seconds[r][k] for r in runs) / 3600 for k in range(n)]
    return (*mean_ci(hours), n)


def aggregate(runs: pd.DataFrame, models: dict, seconds: dict[str, list[float]], datasets: list[str], *,
              params: dict[str, int] | None = None, devices: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per model of `models`: per dataset and metric the test mean and interval over seeds (percent) and
    the seed count; Average = mean of the dataset means, +- the mean of their intervals (NaN unless every dataset
    has results), with the smallest seed count; params as the paper counts them (`params`, millions) and the
    fine-tuned tagger's (result.json); time cost (hours) with its interval, repeat count and devices."""
    params, devices = params or {}, devices or {}
    rows = []
    for model, entry in models.items():
        mine = runs[runs.model == model]
        row = {"model": model, "role": entry["role"],
               "params_m": params[model] / 1e6 if model in params else math.nan,
               "tagger_params_m": mine.params.iloc[0] / 1e6 if len(mine) else math.nan}
        row["time_h"], row["time_ci_h"], row["time_repeats"] = time_cost(entry, seconds, has_results=len(mine) > 0)
        row["time_devices"] = devices_of(entry.get("train_runs", []), devices)
        for metric in METRICS:
            means, cis = [], []
            for dataset in datasets:
                values = mine.loc[mine.dataset == dataset, f"test_{metric}"] * 100
                mean, ci = mean_ci(values)
                row[f"{dataset}:{metric}"], row[f"{dataset}:{metric}_ci"] = mean, ci
                row[f"{dataset}:seeds"] = len(values)
                means.append(mean)
                cis.append(ci)
            row[f"average:{metric}"] = float(np.mean(means))  # NaN when a dataset has no result
            row[f"average:{metric}_ci"] = float(np.mean(cis))
        row["average:seeds"] = min(row[f"{d}:seeds"] for d in datasets)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


# ---- Tables 1-4 -----------------------------------------------------------------------------------------------


def fmt(mean: float, ci: float, digits: int = 2, n: int | None = None) -> str:
    """'mean ± ci'; the mean alone without an interval; '' without a mean; ' (n=k)' appended when the figure
    comes from 0 < k < MIN_SEEDS seeds or repeats."""
    if mean is None or math.isnan(mean):
        return ""
    text = f"{mean:.{digits}f}" if ci is None or math.isnan(ci) else f"{mean:.{digits}f} ± {ci:.{digits}f}"
    return text + (f" (n={n})" if n is not None and 0 < n < MIN_SEEDS else "")


def _hours(mean: float, ci: float, n: int | None = None) -> str:
    # paper hours (4.6 .. 1108) and CPU demo hours (0.01) in one column: enough digits for both
    digits = 1 if not math.isnan(mean) and mean >= 1 else 4
    return fmt(mean, ci, digits, n)


def paper_table(number: int, summary: pd.DataFrame, layout, models: dict, skipped: dict[str, str],
                datasets: list[str]) -> pd.DataFrame:
    """Table `number` as the paper lays it out (`layout`: [(row label, model or None), ...] from the registry),
    every figure 'mean ± ci', marked '(n=k)' below MIN_SEEDS: per dataset and Average our metrics (entity F1 the
    headline) and the paper's figure (beside our PAPER_METRIC, decision 3); the cost tables also params (as the
    paper counts them) and time cost beside the paper's. A row without results says why in `note`."""
    paper = paper_figures()
    paper = paper[paper.table == number].set_index("model")
    out = []
    for label, model in layout:
        p = paper.loc[label] if label in paper.index else None
        ours = summary.loc[model] if model is not None and model in summary.index else None
        row = {"Model": label}
        if number in COST_TABLES:
            row["Params (M)"] = "" if ours is None or math.isnan(ours.params_m) else f"{ours.params_m:.1f}"
            row["Params (M), paper"] = "" if p is None or pd.isna(p.params_m) else f"{p.params_m:g}"
            row["Time cost (h)"] = "" if ours is None else _hours(ours.time_h, ours.time_ci_h, ours.time_repeats)
            row["Time cost (h), paper"] = "" if p is None else _hours(p.time_cost_h, p.time_cost_ci_h)
        for dataset in [*datasets, "average"]:
            name = "Average" if dataset == "average" else paper_dataset(dataset)
            for metric, title in METRIC_TITLES.items():
                row[f"{name} {title}"] = "" if ours is None else fmt(
                    ours[f"{dataset}:{metric}"], ours[f"{dataset}:{metric}_ci"], n=int(ours[f"{dataset}:seeds"]))
            column = "average" if dataset == "average" else paper_dataset(dataset)
            row[f"{name} paper"] = fmt(p[column], p[f"{column}_ci"]) if p is not None and column in p else ""
        entry = models.get(model, {})
        row["note"] = row_note(model, entry, ours, skipped.get(model) or entry.get("skipped"), datasets)
        out.append(row)
    table = pd.DataFrame(out)
    return table if len(paper) else table[[c for c in table.columns if "paper" not in c]]  # ours only (Table 6)


def row_note(model: str | None, entry: dict, ours, skip_reason: str | None, datasets: list[str]) -> str:
    """Why a row has no figures (not configured, skipped, not fine-tuned, no results), else its seed counts."""
    if model is None:
        return "not in the model registry"
    if skip_reason:
        return f"skipped: {skip_reason}"
    seeds = {d: 0 if ours is None else int(ours[f"{d}:seeds"]) for d in datasets}
    if not any(seeds.values()):
        if entry.get("finetuned", True):
            return "no results"
        made = "trained" if entry.get("train_runs") else "available"
        return f"{made}, not fine-tuned (finetune.models)"
    short = [f"{paper_dataset(d)} {n} seed(s)" for d, n in seeds.items() if n != max(seeds.values())]
    return "; ".join([f"{max(seeds.values())} seeds"] + short)


def table_caption(number: int, summary: pd.DataFrame, layout) -> str:
    """The caption of a table's Markdown file: what its figures are, and what its time costs were measured on."""
    which = ("of the paper, our figures beside the paper's" if number in TABLES else
             "(beyond the paper): each task-distilled student beside its student")
    text = (f"Table {number} {which}: mean ± half-width of the 95% Student-t "
            f"interval over fine-tuning seeds; (n=k) marks a figure from fewer than {MIN_SEEDS} seeds or timing "
            "repeats.")
    if number not in COST_TABLES:
        return text
    models = [m for _, m in layout if m is not None and m in summary.index]
    devices = "; ".join(dict.fromkeys(d for d in summary.loc[models, "time_devices"] if isinstance(d, str) and d))
    return text + (
        " Params (M): the model with its MLM and NSP pretraining heads, and for a student also TinyBERT's "
        "projection of its hidden states to the teacher's width, as the paper counts them (the fine-tuned "
        "tagger's own count is in Table 5). Time cost (h): training-loop hours, a student's including its "
        f"teacher's adaptation, measured on {devices or 'no device (no timed run)'}; the paper's on 4 RTX 3090s. "
        "Published adaptation hours (models.published.*.adaptation_hours) count only in a row whose results exist "
        "here." + ("" if number in TABLES else " A _TD row's time cost adds the mean over datasets and seeds of its "
                   "teacher's fine-tuning and its task distillation."))


def write_table(table: pd.DataFrame, stem, caption: str | None = None) -> None:
    """`stem`.csv and `stem`.md (the caption, when given, above the table), each written atomically."""
    stem = Path(stem)
    with atomic_files(stem.with_suffix(".csv"), stem.with_suffix(".md")) as (csv, md):
        table.to_csv(csv, index=False)
        md.write_text((f"{caption}\n\n" if caption else "") + table.to_markdown(index=False, disable_numparse=True)
                      + "\n")


# ---- claims ---------------------------------------------------------------------------------------------------


def paired_differences(runs: pd.DataFrame, a: str, b: str, datasets: list[str], metric: str
                       ) -> dict[str, tuple[int, float, float]]:
    """Test F1 of model `a` minus model `b` in points, paired by seed: {dataset: (n, mean, 95% half-width)} over
    the seeds both have, and "average": the same over each seed's mean difference across the datasets (the seeds
    both have on every dataset)."""
    def scores(model):
        mine = runs[runs.model == model]
        return pd.Series(mine[f"test_{metric}"].to_numpy() * 100,
                         index=pd.MultiIndex.from_frame(mine[["dataset", "seed"]]), dtype=float)

    diff = (scores(a) - scores(b)).dropna()  # aligned on (dataset, seed): pairs only
    out = {}
    for dataset in datasets:
        values = diff[diff.index.get_level_values("dataset") == dataset]
        out[dataset] = (len(values), *mean_ci(values))
    if diff.empty:
        per_seed = pd.Series(dtype=float)
    else:
        per_seed = diff.unstack("dataset").reindex(columns=datasets).dropna().mean(axis=1)
    out["average"] = (len(per_seed), *mean_ci(per_seed))
    return out


def time_ratio(seconds: dict[str, list[float]], runs_a: list[str], runs_b: list[str]) -> tuple[int, float, float]:
    """Time of runs `runs_a` over that of `runs_b`, paired by timing repeat (repeat k of each run added up): (n,
    mean ratio, 95% half-width) over the repeats every run has."""
    n = min(len(seconds.get(r, [])) for r in [*runs_a, *runs_b])
    below = [sum(seconds[r][k] for r in runs_b) for k in range(n)]
    if not all(below):
        raise ValueError(f"the runs {runs_b} took 0 seconds in a timing repeat: no time ratio against them")
    return (n, *mean_ci([sum(seconds[r][k] for r in runs_a) / b for k, b in enumerate(below)]))


def judge(estimates: list[tuple[int, float, float]], null: float, side: str) -> str:
    """A claim that every estimate lies `side` ("above" / "below") `null`: supported when every 95% interval lies
    on that side, contradicted when one lies wholly on the other, else (or without an interval) inconclusive."""
    if not estimates:
        return "not tested"
    sign = 1 if side == "above" else -1
    verdicts = []
    for n, mean, ci in estimates:
        if n < 2 or math.isnan(ci):
            verdicts.append("inconclusive")
        elif sign * (mean - null) > ci:
            verdicts.append("supported")
        elif sign * (null - mean) > ci:
            verdicts.append("contradicted")
        else:
            verdicts.append("inconclusive")
    if "contradicted" in verdicts:
        return "contradicted"
    return "supported" if set(verdicts) == {"supported"} else "inconclusive"


# The paper's claims (abstract and conclusion) as this workflow tests them (docs/design.md decision 10): each
# claims that its comparisons lie on one side of a null value.
CLAIMS = {
    "C1": ("EDAD's student is more accurate than the two-stage student (exBERT adapted, then distilled: exBERT_GD)",
           0.0, "above"),  # EDAD - exBERT_GD
    "C2": ("EDAD takes less training time than the two-stage pipeline (exBERT's adaptation plus its distillation)",
           1.0, "below"),  # EDAD / exBERT_GD
    "C3": ("The paper's alpha schedule (linear) gives the most accurate EDAD student of Table 4's schedules",
           0.0, "below"),  # every other schedule - linear
    "T1": ("Beyond the paper: task distillation makes a student more accurate (Table 6)", 0.0, "above"),  # _TD - it
}
BEYOND_PAPER = ("T1",)  # judged only when the config makes its rows


def claims(runs: pd.DataFrame, seconds: dict[str, list[float]], models: dict, layouts: dict, datasets: list[str]
           ) -> tuple[pd.DataFrame, list[str]]:
    """The comparisons behind the paper's claims, from the same results as the tables (one row each: claim,
    comparison, quantity, dataset, n, estimate, 95% half-width, bounds, the paper's figure) and one verdict line
    per claim (CLAIMS), judged on PAPER_METRIC's average (judge())."""
    layouts = {int(n): dict(rows) for n, rows in layouts.items()}  # JSON makes the table numbers strings
    table2, table4 = layouts.get(2, {}), layouts.get(4, {})
    edad, two_stage = table2.get("EDAD"), table2.get("exBERT_GD")
    paper = paper_figures().set_index(["table", "model"])
    rows, tested = [], {key: [] for key in CLAIMS}

    def f1_rows(claim, table, label_a, a, label_b, b):
        for metric, title in METRIC_TITLES.items():
            for dataset, (n, mean, ci) in paired_differences(runs, a, b, datasets, metric).items():
                column = "average" if dataset == "average" else paper_dataset(dataset)
                in_paper = (table, label_a) in paper.index and (table, label_b) in paper.index
                rows.append({"claim": claim, "comparison": f"{label_a} - {label_b}",
                             "quantity": f"{title} difference (points)", "dataset": column, "n": n, "estimate": mean,
                             "ci": ci, "paper": paper.loc[(table, label_a), column] - paper.loc[(table, label_b), column]
                             if in_paper else math.nan})
                if metric == PAPER_METRIC and dataset == "average":
                    tested[claim].append(rows[-1])

    if edad and two_stage:
        f1_rows("C1", 2, "EDAD", edad, "exBERT_GD", two_stage)
        timed = [models[m]["train_runs"] for m in (edad, two_stage)]
        if all(seconds.get(r) for runs_ in timed for r in runs_):
            n, mean, ci = time_ratio(seconds, *timed)
            p = paper.loc[(2, "EDAD"), "time_cost_h"] / paper.loc[(2, "exBERT_GD"), "time_cost_h"]
            rows.append({"claim": "C2", "comparison": "EDAD / exBERT_GD", "quantity": "time ratio", "dataset": "",
                         "n": n, "estimate": mean, "ci": ci, "paper": p})
            tested["C2"].append(rows[-1])
    reference = {m: label for label, m in table4.items() if m is not None}.get(edad)
    for label, model in table4.items():
        if model is not None and reference is not None and label != reference:
            f1_rows("C3", 4, label, model, reference, edad)
    table6 = layouts.get(TASK_TABLE, {})
    for label, model in table6.items():
        student = table6.get(label.removesuffix(TASK_DISTILLED)) if label.endswith(TASK_DISTILLED) else None
        if model is not None and student is not None:
            f1_rows("T1", TASK_TABLE, label, model, label.removesuffix(TASK_DISTILLED), student)
    table = pd.DataFrame(rows, columns=["claim", "comparison", "quantity", "dataset", "n", "estimate", "ci", "paper"])
    table.insert(table.columns.get_loc("ci") + 1, "low", table.estimate - table.ci)
    table.insert(table.columns.get_loc("low") + 1, "high", table.estimate + table.ci)
    verdicts = []
    for key, (text, null, side) in CLAIMS.items():
        found = [r for r in tested[key] if r["n"]]  # a row made but not fine-tuned (or timed) has nothing to pair
        if key in BEYOND_PAPER and not tested[key]:
            continue
        verdict = judge([(r["n"], r["estimate"], r["ci"]) for r in found], null, side)
        figures = "; ".join(_claim_figure(r) for r in found) or "no paired results of the rows it compares here"
        verdicts.append(f"**{key}** {text}: **{verdict}** ({figures})")
    return table, verdicts


def _claim_figure(row: dict) -> str:
    digits, sign = (3, "") if row["quantity"] == "time ratio" else (2, "+")
    paper = "" if pd.isna(row["paper"]) else f"; paper {row['paper']:{sign}.{digits}f}"  # T1: not the paper's
    return f"{row['comparison']}, {row['quantity']}: {fmt(row['estimate'], row['ci'], digits)}, n={row['n']}{paper}"


def write_claims(table: pd.DataFrame, verdicts: list[str], stem) -> None:
    """`stem`.csv (the comparisons) and `stem`.md (the verdicts, then the comparisons), each written atomically."""
    stem = Path(stem)
    shown = table.assign(**{c: table[c].map(lambda x: "" if pd.isna(x) else f"{x:.4g}")
                            for c in ("estimate", "ci", "low", "high", "paper")})
    text = ("# The paper's claims at this run's size\n\n"
            "Each claim is judged on the 95% Student-t interval of its paired comparison (F1 differences paired by "
            f"fine-tuning seed, average {METRIC_TITLES[PAPER_METRIC]} over the datasets; time ratios paired by timing "
            "repeat): supported when the interval lies on the claimed side, contradicted when it lies wholly on "
            "the other, inconclusive otherwise or with fewer than 2 pairs (docs/design.md decision 10).\n\n"
            + "".join(f"- {v}\n" for v in verdicts)
            + "\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n")
    with atomic_files(stem.with_suffix(".csv"), stem.with_suffix(".md")) as (csv, md):
        table.to_csv(csv, index=False)
        md.write_text(text)


# ---- Table 5 --------------------------------------------------------------------------------------------------


def sample_sentences(tsv, n: int, seed: int = 0) -> list[list[str]]:
    """`n` random sentences (word lists) of a NER split (edad_core.ner_data format), fewer if it has fewer."""
    sentences = [words for words, _ in read_iob(tsv)]
    return random.Random(seed).sample(sentences, min(n, len(sentences)))


@torch.inference_mode()
def throughput(model_dir, tokenizer_dir, sentences: list[list[str]], *, batch_size: int = 32, max_length: int = 128,
               device: str = "cpu", repeats: int = 1) -> float:
    """Sentences per second of the encoder's forward pass (tokenisation included, dynamic padding): the median of
    `repeats` passes over `sentences`, after one warm-up batch."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModel.from_pretrained(model_dir).to(device).eval()

    def run(batch):
        enc = tokenizer(batch, is_split_into_words=True, truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device))

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    run(sentences[:batch_size])
    speeds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for i in range(0, len(sentences), batch_size):
            run(sentences[i : i + batch_size])
        sync()
        speeds.append(len(sentences) / (time.perf_counter() - start))
    return float(np.median(speeds))


def table5(folders: dict[str, str], summary: pd.DataFrame, sentences: list[list[str]], *, batch_size: int = 32,
           max_length: int = 128, repeats: int = 1) -> pd.DataFrame:
    """Every model's parameters, size on disk (MB, its weight files), inference throughput (sentences/s; CPU, and
    GPU when one is present) and average entity F1 ± interval. `folders`: model -> model folder."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for model, spec in folders.items():
        folder = Path(resolve_model(spec))  # a hub id: the mirror's copy, the HF cache's or a download
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            raise ValueError(f"{model}: no *.safetensors weights in {folder}")
        ours = summary.loc[model] if model in summary.index else None
        row = {"Model": model, "Params (M)": "" if ours is None else f"{ours.tagger_params_m:.1f}",
               "Size (MB)": f"{sum(w.stat().st_size for w in weights) / 1e6:.1f}",
               "Type": AutoConfig.from_pretrained(folder).model_type}
        for device in devices:
            speed = throughput(folder, folder, sentences, batch_size=batch_size, max_length=max_length, device=device,
                               repeats=repeats)
            row[f"Sentences/s ({device.upper()})"] = f"{speed:.1f}"
        row["Average entity F1"] = "" if ours is None else fmt(ours["average:entity_f1"], ours["average:entity_f1_ci"])
        rows.append(row)
        log.info("table 5: %s", row)
    return pd.DataFrame(rows)


def write_table5(table: pd.DataFrame, tagging: list[dict], stem) -> None:
    """`stem`.csv (the models), `stem`_tagging.csv (each exported tagger's backends: the speed.json of rule
    export_ner, edad_core.tagging_speed) and `stem`.md with both, the tagging rows' measurement notes below them."""
    stem = Path(stem)
    rows = pd.concat([speed_frame(t["rows"]).assign(Dataset=paper_dataset(t["dataset"]), Seed=t["seed"])
                      for t in tagging] or [speed_frame([]).assign(Dataset=[], Seed=[])])
    rows = rows[["Model", "Dataset", "Seed", *SPEED_COLUMNS[1:]]]
    notes = "".join(f"- {t['rows'][0]['model']}, {paper_dataset(t['dataset'])}: {speed_note(t['rows'], t['source'])}\n"
                    for t in tagging)
    text = (table.to_markdown(index=False, disable_numparse=True) + "\n\n**Tagging raw text** (the exported taggers):\n\n"
            + (rows.to_markdown(index=False, disable_numparse=True) + "\n\n" + notes if tagging
               else "No tagger is exported (config export.ner.rows).\n"))
    with atomic_files(stem.with_suffix(".csv"), stem.with_name(stem.name + "_tagging.csv"), stem.with_suffix(".md")
                      ) as (csv, tagging_csv, md):
        table.to_csv(csv, index=False)
        rows.to_csv(tagging_csv, index=False)
        md.write_text(text)


def write_summary(summary: pd.DataFrame, path) -> None:
    atomic_write_text(path, summary.to_csv())
