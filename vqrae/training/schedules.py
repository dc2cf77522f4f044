"""Learning-rate schedules as multiplicative factors of the base rate, functions of the step.

A factor depends only on the step, so a resumed run continues the same curve exactly.
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["Schedule", "constant_with_warmup", "lr_factor", "warmup_cosine"]

Schedule = Literal["cosine", "constant"]


def warmup_cosine(step: int, warmup: int, total: int, final_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``final_ratio`` at ``total`` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def constant_with_warmup(step: int, warmup: int) -> float:
    """Linear warm-up to 1, then constant (the paper's generator recipe: 1e-4 after 4000)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return 1.0


def lr_factor(
    step: int, warmup: int, total: int, final_ratio: float, schedule: Schedule = "cosine"
) -> float:
    """The factor of ``schedule`` at ``step`` (``final_ratio`` and ``total`` only for cosine)."""
    if schedule == "cosine":
        return warmup_cosine(step, warmup, total, final_ratio)
    if schedule == "constant":
        return constant_with_warmup(step, warmup)
    raise ValueError(f"unknown schedule {schedule!r}; use 'cosine' or 'constant'")
