"""The report's figures (PNG through matplotlib's Agg renderer; figures are made without pyplot, so no display and
no global backend state are involved).

    f1_vs_time(summary, "results/plots/f1_vs_time.png")        # summary: edad_core.report.aggregate()
    alpha_schedules("results/plots/alpha_schedules.png")
    training_curves({"edad_linear": "results/train/edad_linear/metrics.jsonl", ...}, "results/plots/edad.png")
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from edad_core.files import atomic_write_bytes
from edad_core.report import METRIC_TITLES
from edad_core.schedules import SCHEDULES, alpha

# metrics.jsonl keys that are bookkeeping, not training curves
NOT_CURVES = {"step", "epoch", "loss", "tokens_per_s"}


def _save(fig, path) -> None:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    atomic_write_bytes(path, buffer.getvalue())


def clipped_bars(means, cis, low: float = 0.0, high: float = math.inf) -> np.ndarray:
    """errorbar's [lower, upper] bar lengths of `means` +- `cis`, cut at the metric's range [low, high] (F1 in
    percent: 0..100; hours: >= 0), so that no bar claims a value the metric cannot take; no interval: no bar."""
    means, cis = np.asarray(means, dtype=float), np.nan_to_num(np.asarray(cis, dtype=float))
    return np.stack([np.minimum(cis, means - low), np.minimum(cis, high - means)])


def f1_vs_time(summary: pd.DataFrame, path, metric: str = "entity_f1") -> None:
    """Average F1 against time cost (hours, log scale), 95% interval bars on both axes cut at the metrics' ranges
    (F1 0..100, hours >= 0); teachers and students marked apart. Models without a time cost or an average are left
    out."""
    fig = Figure(figsize=(7, 4.5), dpi=120, layout="tight")
    ax = fig.subplots()
    shown = summary[summary.time_h.notna() & summary[f"average:{metric}"].notna()]
    for role, marker in (("teacher", "s"), ("student", "o")):
        part = shown[shown.role == role]
        if part.empty:
            continue
        ax.errorbar(part.time_h, part[f"average:{metric}"], fmt=marker, capsize=3, label=role,
                    xerr=clipped_bars(part.time_h, part.time_ci_h),
                    yerr=clipped_bars(part[f"average:{metric}"], part[f"average:{metric}_ci"], 0.0, 100.0))
        for model, row in part.iterrows():
            ax.annotate(model, (row.time_h, row[f"average:{metric}"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    if (shown.time_h > 0).all() and not shown.empty:
        ax.set_xscale("log")
    ax.set_xlabel("time cost (hours: adaptation + distillation)")
    ax.set_ylabel(f"average test {METRIC_TITLES[metric]} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def alpha_schedules(path, steps: int = 200) -> None:
    """alpha (weight of the distillation loss) over training for every schedule of edad_core.schedules."""
    fig = Figure(figsize=(7, 4), dpi=120, layout="tight")
    ax = fig.subplots()
    t = np.arange(steps + 1)
    for name in SCHEDULES:
        ax.plot(t / steps, [alpha(name, s, steps) for s in t], label=name)
    ax.set_xlabel("fraction of training done (t / T)")
    ax.set_ylabel("alpha  (student loss: (1 - alpha) (MLM + NSP) + alpha TinyBERT)", fontsize=8)
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    _save(fig, path)


def read_metrics(path) -> pd.DataFrame:
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    try:
        return pd.DataFrame([json.loads(line) for line in lines])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON lines ({e})") from None


def training_curves(runs: dict[str, str], path) -> None:
    """One panel per logged loss term (teacher_mlm, student_tiny, ..., alpha) against the optimizer step, one
    line per run; `runs`: run name -> its metrics.jsonl."""
    frames = {run: read_metrics(p) for run, p in runs.items()}
    keys = sorted({k for f in frames.values() for k in f.columns
                   if k not in NOT_CURVES and not k.startswith(("lr/", "loss/"))})
    if not keys:
        raise ValueError(f"no loss terms logged in {list(runs.values())}")
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 3 * rows), dpi=120, layout="tight")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for run, frame in frames.items():
            if key in frame:
                ax.plot(frame.step, frame[key], label=run)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.remove()
    axes.flat[0].legend(fontsize=7)
    _save(fig, path)
