"""The model-running half of GenEval and DPG-Bench: draw the images their scorers read.

* :func:`run_geneval`: for each line of a GenEval metadata file (GenEval's 553 prompts, or
  the shapes world's records), ``<out>/<5-digit index>/metadata.jsonl`` and
  ``samples/NNNN.png`` (GenEval's ``generation/diffusers_generate.py`` layout), scored by
  ``vqrae geneval score`` (:mod:`vqrae.eval.geneval`) or GenEval's own evaluator;
* :func:`run_dpg`: for each ``<id>.txt`` of a DPG-Bench prompt folder, ``<out>/<id>.png``, a
  2x2 grid of four samples (ELLA's layout), scored by :mod:`vqrae.eval.dpg`.

Both resume: a prompt whose outputs are complete is skipped, so a long CPU run can continue
where it stopped. Sample ``k`` of every prompt is drawn with seed ``seed + k``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vqrae.data.shapes.geneval_prompts import write_geneval_prompt_dir
from vqrae.data.shapes.writer import dpg_grid
from vqrae.eval.geneval import validate_metadata
from vqrae.generation.api import generate_for_prompts
from vqrae.generation.model import ImageGenerator
from vqrae.generation.sampler import SamplingConfig
from vqrae.utils.files import atomic_write
from vqrae.utils.jsonl import iter_jsonl

__all__ = ["BenchRun", "read_dpg_prompts", "read_geneval_metadata", "run_dpg", "run_geneval"]

Progress = Callable[[int], None]


@dataclass(frozen=True)
class BenchRun:
    """What a benchmark run wrote."""

    out: str
    prompts: int
    written: int
    skipped: int
    images: int
    truncated: int

    def format(self, what: str) -> str:
        parts = [f"{self.written} {what} written"]
        if self.skipped:
            parts.append(f"{self.skipped} already complete")
        if self.truncated:
            parts.append(f"{self.truncated} prompt(s) cut to the generator's length")
        return f"{', '.join(parts)} ({self.images} images): {self.out}"


def read_geneval_metadata(
    path: str | os.PathLike[str], limit: int | None = None
) -> list[dict[str, Any]]:
    """The records of a GenEval metadata file (one JSON object per line), checked.

    Raises:
        ValueError: a missing file, a malformed line, or a record GenEval would reject.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"metadata file {path} not found")
    records = []
    for number, record in iter_jsonl(path):
        records.append(validate_metadata(record, f"{path}:{number}"))
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise ValueError(f"{path} holds no records")
    return records


def _geneval_complete(folder: Path, record: dict[str, Any], n: int) -> bool:
    meta = folder / "metadata.jsonl"
    if not meta.is_file() or json.loads(meta.read_text()) != record:
        return False
    return all((folder / "samples" / f"{k:04d}.png").is_file() for k in range(n))


def run_geneval(
    generator: ImageGenerator,
    metadata: str | os.PathLike[str],
    out: str | os.PathLike[str],
    n_samples: int = 4,
    seed: int = 0,
    limit: int | None = None,
    sampling: SamplingConfig | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> BenchRun:
    """Draw ``n_samples`` images per GenEval record into GenEval's layout under ``out``."""
    records = read_geneval_metadata(metadata, limit)
    root = Path(out)
    written = skipped = truncated = 0
    for index, record in enumerate(records):
        folder = root / f"{index:05d}"
        if _geneval_complete(folder, record, n_samples):
            skipped += 1
        else:
            (group,) = generate_for_prompts(
                generator, [record["prompt"]], n_samples, seed, sampling, batch_size, False
            )
            write_geneval_prompt_dir(root, index, record, group.images)
            written += 1
            truncated += group.truncated
        if progress is not None:
            progress(1)
    return BenchRun(str(root), len(records), written, skipped, len(records) * n_samples, truncated)


def read_dpg_prompts(
    folder: str | os.PathLike[str], limit: int | None = None
) -> list[tuple[str, str]]:
    """``(id, prompt)`` of a DPG-Bench prompt folder (``<id>.txt``), ordered by id.

    Raises:
        ValueError: a missing folder or one without prompt files.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"DPG prompt folder {root} not found")
    files = sorted(
        root.glob("*.txt"),
        key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.stem),
    )
    if not files:
        raise ValueError(f"{root} holds no <id>.txt prompt files")
    files = files[:limit] if limit is not None else files
    return [(p.stem, p.read_text(encoding="utf-8").strip()) for p in files]


def run_dpg(
    generator: ImageGenerator,
    prompts: str | os.PathLike[str],
    out: str | os.PathLike[str],
    seed: int = 0,
    limit: int | None = None,
    sampling: SamplingConfig | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> BenchRun:
    """Draw four samples per DPG-Bench prompt as ``<out>/<id>.png`` 2x2 grids."""
    items = read_dpg_prompts(prompts, limit)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    written = skipped = truncated = 0
    for item_id, text in items:
        path = root / f"{item_id}.png"
        if path.is_file():
            skipped += 1
        else:
            (group,) = generate_for_prompts(generator, [text], 4, seed, sampling, batch_size, False)
            grid = dpg_grid(group.images)
            atomic_write(path, lambda tmp, grid=grid: grid.save(tmp, format="PNG"))
            written += 1
            truncated += group.truncated
        if progress is not None:
            progress(1)
    return BenchRun(str(root), len(items), written, skipped, len(items) * 4, truncated)
