"""Trainer checkpoints: one directory per step, written atomically, the last K kept.

    step_00001000/
        model.safetensors          full model state (raw weights)
        ema.safetensors            EMA of the trained weights (when enabled)
        discriminator.safetensors  discriminator and LeCam state (when the GAN is on)
        trainer_state.pt           step, optimizers, RNG states, counters (weights_only-loadable)

A directory becomes visible under its final name only once complete (written as a temporary
sibling, then renamed), so a run killed at any moment leaves either the previous checkpoint or
the new one, never a partial one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["find_latest", "load_checkpoint", "prune_checkpoints", "save_checkpoint"]

_PATTERN = re.compile(r"^step_(\d{8})$")


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := _PATTERN.match(p.name)) and p.is_dir()
    ]
    return sorted(found)


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    tensors: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
) -> Path:
    """Write ``{name}.safetensors`` for each entry of ``tensors`` and ``trainer_state.pt``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step_{step:08d}.", dir=root))
    try:
        for name, group in tensors.items():
            cpu = {k: v.detach().cpu().contiguous() for k, v in group.items()}
            save_file(cpu, str(tmp / f"{name}.safetensors"))
        torch.save(state, tmp / "trainer_state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def find_latest(root: str | os.PathLike) -> Path | None:
    """The most recent complete checkpoint directory under ``root``, or ``None``."""
    dirs = _step_dirs(Path(root))
    return dirs[-1][1] if dirs else None


def load_checkpoint(
    path: str | os.PathLike,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read a checkpoint directory: ({name: tensors}, trainer state)."""
    path = Path(path)
    tensors = {p.stem: load_file(str(p)) for p in sorted(path.glob("*.safetensors"))}
    state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
    return tensors, state


def prune_checkpoints(root: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` most recent checkpoints (and stale temporary folders)."""
    root = Path(root)
    for _, path in _step_dirs(root)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    for stale in root.glob(".step_*"):
        shutil.rmtree(stale, ignore_errors=True)
