"""Interleaved timing with the machine's load beside each figure: the bench scripts' and the tagging speed's
(edad_core.tagging_speed) one way to time things that are compared with each other."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def interleaved(cases: dict, repeats: int, warmup: bool = True) -> dict:
    """Run the cases A B C A B C ... `repeats` times (after one untimed round with `warmup`), so that a change of
    the machine's load falls on all of them alike. A case (a callable) returns its own seconds, or None to be timed
    here. -> {case: {"seconds": [...], "cpu_seconds": [this process's CPU time of each run, all threads: steadier
    than the wall time on a shared machine], "load": [1-minute load average after each run]}}"""
    if warmup:
        for fn in cases.values():
            fn()
    timings = {name: {"seconds": [], "cpu_seconds": [], "load": []} for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            seconds = fn()
            timings[name]["seconds"].append(time.perf_counter() - start if seconds is None else seconds)
            timings[name]["cpu_seconds"].append(time.process_time() - cpu_start)
            timings[name]["load"].append(load_average())
    return timings


def spread(values: list[float]) -> dict:
    """Median, min and max, rounded for printing."""
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}
