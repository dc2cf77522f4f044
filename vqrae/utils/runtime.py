"""Devices and numeric precision, decided in one place."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Literal

import torch

__all__ = ["Precision", "autocast", "default_precision", "git_revision", "resolve_device"]

Precision = Literal["bf16-mixed", "32"]


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def default_precision(device: torch.device) -> Precision:
    """bf16 autocast on CUDA; fp32 on CPU (CPU bf16 matmul is far slower than fp32 here)."""
    return "bf16-mixed" if device.type == "cuda" else "32"


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """The autocast context for a precision setting."""
    if precision == "32":
        return contextlib.nullcontext()
    if precision == "bf16-mixed":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown precision {precision!r}; use 'bf16-mixed' or '32'")


def git_revision() -> str | None:
    """The commit of the installed source tree, recorded beside outputs (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
