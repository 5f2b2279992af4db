"""The paper's Tables 1-4 from the workflow's results, with the paper's figures beside ours, and Table 5 (size and
inference speed of every model). Decisions: docs/design.md 3 (F1 scales), 4 (time cost), 6 (intervals).

    runs, skipped = load_runs(paths)                      # result.json / skipped.json of the finetune rule
    summary = aggregate(runs, models, seconds, datasets)  # one row per model: means, intervals, time cost
    table = paper_table(1, summary, models, skipped)      # display table of Table 1; write_table(table, stem)

`models` is a plain mapping, model name -> {"role": "teacher" | "student", "train_runs": [run, ...] (their
train_seconds add up to the model's time cost), "published_hours": hours or null (a published adaptation cost
added to the measured runs: BioBERT 1104, SciBERT 672), "tables": {table number: row label}}. Table 4's row labels
are the schedule names, Tables 2 and 3 label the EDAD student of the paper's schedule "EDAD".
`seconds`: run name -> [train_seconds of repeat 0, 1, ...] (repeat 0 is the run itself).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from huggingface_hub import snapshot_download
from scipy import stats
from transformers import AutoConfig, AutoModel, AutoTokenizer

import edad_core  # noqa: F401  (registers model_type exbert with the Auto classes)
from edad_core.download import resolve_model
from edad_core.files import atomic_files, atomic_write_text
from edad_core.ner_data import read_iob

log = logging.getLogger(__name__)

PAPER_TABLES = "paper_tables.csv"  # edad_core/data/: the paper's Tables 1-4 (source: see docs/design.md §5)
METRICS = {"entity_f1": ("entity", "f1"), "token_f1": ("token_macro_f1",)}


def paper_figures() -> pd.DataFrame:
    with resources.files("edad_core.data").joinpath(PAPER_TABLES).open() as f:
        return pd.read_csv(f)


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
    missing, NaN, infinite or negative is an error naming the file."""
    out = {}
    for run, paths in summaries.items():
        out[run] = []
        for path in paths:
            data = _read_json(path)
            value = data.get("train_seconds")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{path}: no numeric train_seconds")
            if not 0 <= value < math.inf:
                raise ValueError(f"{path}: train_seconds = {value} is not a duration in seconds (finite, >= 0)")
            out[run].append(float(value))
    return out


# ---- aggregation ----------------------------------------------------------------------------------------------


def time_cost(entry: dict, seconds: dict[str, list[float]]) -> tuple[float, float, int]:
    """Hours: mean and 95% interval over the timing repeats of a model's cost. Repeat k's cost is the sum of
    repeat k of each of its runs plus the published hours; only repeats every run has are used. A model with no
    run (BERT) costs its published hours or NaN; a skipped model with runs (BioBERT_GD offline) costs NaN: they
    were not made."""
    runs, published = entry.get("train_runs", []), entry.get("published_hours")
    if runs and entry.get("skipped"):
        return math.nan, math.nan, 0
    if not runs:
        return (math.nan if published is None else float(published)), math.nan, 0
    published = published or 0.0
    missing = [r for r in runs if not seconds.get(r)]
    if missing:
        raise ValueError(f"no train_seconds for the runs {missing}")
    n = min(len(seconds[r]) for r in runs)
    if any(len(seconds[r]) != n for r in runs):
        log.warning("runs %s have unequal numbers of timing repeats; using the first %d", runs, n)
    hours = [published + sum(seconds[r][k] for r in runs) / 3600 for k in range(n)]
    return (*mean_ci(hours), n)


def aggregate(runs: pd.DataFrame, models: dict, seconds: dict[str, list[float]], datasets: list[str]
              ) -> pd.DataFrame:
    """One row per model of `models`: per dataset and metric the test mean and interval over seeds (percent) and
    the seed count; Average = mean of the dataset means, +- the mean of their intervals (NaN unless every dataset
    has results); params (millions); time cost (hours) with its interval and repeat count."""
    rows = []
    for model, entry in models.items():
        mine = runs[runs.model == model]
        row = {"model": model, "role": entry["role"],
               "params_m": mine.params.iloc[0] / 1e6 if len(mine) else math.nan}
        row["time_h"], row["time_ci_h"], row["time_repeats"] = time_cost(entry, seconds)
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
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


# ---- Tables 1-4 -----------------------------------------------------------------------------------------------


def fmt(mean: float, ci: float, digits: int = 2) -> str:
    """'mean ± ci'; the mean alone without an interval; '' without a mean."""
    if mean is None or math.isnan(mean):
        return ""
    if ci is None or math.isnan(ci):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def _hours(mean: float, ci: float) -> str:
    # paper hours (4.6 .. 1108) and CPU demo hours (0.01) in one column: enough digits for both
    digits = 1 if not math.isnan(mean) and mean >= 1 else 4
    return fmt(mean, ci, digits)


def table_rows(number: int, models: dict) -> list[tuple[str, str | None]]:
    """(row label, model name or None) of a table: the paper's rows in its order, then our extra rows."""
    ours = {}
    for model, entry in models.items():
        labels = {int(k): v for k, v in entry.get("tables", {}).items()}  # JSON makes the numbers strings
        if number in labels:
            ours[labels[number]] = model
    paper = paper_figures()
    labels = list(paper.loc[paper.table == number, "model"])
    return [(label, ours.get(label)) for label in labels] + [(l, m) for l, m in ours.items() if l not in labels]


def paper_table(number: int, summary: pd.DataFrame, models: dict, skipped: dict[str, str], datasets: list[str]
                ) -> pd.DataFrame:
    """Table `number` as the paper lays it out, every figure 'mean ± ci': per dataset and Average our entity F1
    (headline), our token macro F1 and the paper's figure (beside the token column, decision 3); Tables 1-3 also
    params and time cost beside the paper's. A row without results says why in `note`."""
    paper = paper_figures()
    paper = paper[paper.table == number].set_index("model")
    out = []
    for label, model in table_rows(number, models):
        p = paper.loc[label] if label in paper.index else None
        ours = summary.loc[model] if model is not None and model in summary.index else None
        row = {"Model": label}
        if number != 4:
            row["Params (M)"] = "" if ours is None or math.isnan(ours.params_m) else f"{ours.params_m:.1f}"
            row["Params (M), paper"] = "" if p is None or pd.isna(p.params_m) else f"{p.params_m:g}"
            row["Time cost (h)"] = "" if ours is None else _hours(ours.time_h, ours.time_ci_h)
            row["Time cost (h), paper"] = "" if p is None else _hours(p.time_cost_h, p.time_cost_ci_h)
        for dataset in [*datasets, "average"]:
            name = "Average" if dataset == "average" else paper_dataset(dataset)
            for metric, title in (("entity_f1", "entity F1"), ("token_f1", "token F1")):
                row[f"{name} {title}"] = "" if ours is None else fmt(ours[f"{dataset}:{metric}"],
                                                                      ours[f"{dataset}:{metric}_ci"])
            column = "average" if dataset == "average" else paper_dataset(dataset)
            row[f"{name} paper"] = fmt(p[column], p[f"{column}_ci"]) if p is not None and column in p else ""
        reason = skipped.get(model) or (models[model].get("skipped") if model is not None else None)
        row["note"] = row_note(model, ours, reason, datasets)
        out.append(row)
    return pd.DataFrame(out)


def row_note(model: str | None, ours, skip_reason: str | None, datasets: list[str]) -> str:
    if model is None:
        return "not in the model registry"
    if skip_reason:
        return f"skipped: {skip_reason}"
    seeds = {d: 0 if ours is None else int(ours[f"{d}:seeds"]) for d in datasets}
    if not any(seeds.values()):
        return "no results"
    short = [f"{paper_dataset(d)} {n} seed(s)" for d, n in seeds.items() if n != max(seeds.values())]
    return "; ".join([f"{max(seeds.values())} seeds"] + short)


def write_table(table: pd.DataFrame, stem) -> None:
    """`stem`.csv and `stem`.md, each written atomically."""
    stem = Path(stem)
    with atomic_files(stem.with_suffix(".csv"), stem.with_suffix(".md")) as (csv, md):
        table.to_csv(csv, index=False)
        md.write_text(table.to_markdown(index=False, disable_numparse=True) + "\n")


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


def model_folder(spec: str) -> Path:
    """The local folder of a model spec (folder, pkg:..., or a hub id: its snapshot in the Hugging Face cache,
    fetched if missing), so that its weight files can be measured."""
    folder = resolve_model(spec)
    if Path(folder).is_dir():
        return Path(folder)
    return Path(snapshot_download(folder, allow_patterns=["*.json", "*.txt", "*.safetensors"]))


def table5(folders: dict[str, str], summary: pd.DataFrame, sentences: list[list[str]], *, batch_size: int = 32,
           max_length: int = 128, repeats: int = 1) -> pd.DataFrame:
    """Every model's parameters, size on disk (MB, its weight files), inference throughput (sentences/s; CPU, and
    GPU when one is present) and average entity F1 ± interval. `folders`: model -> model folder."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for model, spec in folders.items():
        folder = model_folder(spec)
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            raise ValueError(f"{model}: no *.safetensors weights in {folder}")
        ours = summary.loc[model] if model in summary.index else None
        row = {"Model": model, "Params (M)": "" if ours is None else f"{ours.params_m:.1f}",
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


def write_summary(summary: pd.DataFrame, path) -> None:
    atomic_write_text(path, summary.to_csv())
