"""Alpha schedules of the EDAD student loss L = (1 - alpha) * (L_MLM + L_NSP) + alpha * L_Tiny.

alpha(name, step, total_steps) with t = step clamped to [0, T], T = total_steps. Paper Table 4 label -> name
(docs/design.md decision 1: follow the paper's text and eq. (6), not the authors' code, which ramps 0 -> 1):

    Linear               linear          1 - t/T                    (1 -> 0: distillation first, adaptation last)
    Linear reverse       linear_reverse  t/T                        (0 -> 1: what the authors' code does)
    Cosine               cosine          0.5 * (1 + cos(pi * t/T))  (1 -> 0)
    Cosine reverse       cosine_reverse  1 - cosine                 (0 -> 1)
    Same ratio           same_ratio      0.5
    Only DA (alpha=1)    only_da         0  (student: MLM + NSP only; the table's "alpha=1" contradicts eq. (6))
    Only DT (alpha=2)    only_dt         1  (student trains on the TinyBERT loss only)

In every schedule the teacher still adapts (MLM + NSP) in the same run.
"""

import math

# each schedule as a function of the fraction of training done, f = t/T in [0, 1]
_BY_FRACTION = {
    "linear": lambda f: 1.0 - f,
    "linear_reverse": lambda f: f,
    "cosine": lambda f: 0.5 * (1.0 + math.cos(math.pi * f)),
    "cosine_reverse": lambda f: 1.0 - 0.5 * (1.0 + math.cos(math.pi * f)),
    "same_ratio": lambda f: 0.5,
    "only_da": lambda f: 0.0,
    "only_dt": lambda f: 1.0,
}
SCHEDULES = tuple(_BY_FRACTION)


def alpha(name: str, step: int, total_steps: int) -> float:
    """Weight of the distillation loss at optimizer step `step` of `total_steps`."""
    if name not in _BY_FRACTION:
        raise ValueError(f"unknown alpha schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0 for alpha schedule {name!r}, got {total_steps}")
    return float(_BY_FRACTION[name](min(max(step, 0), total_steps) / total_steps))
