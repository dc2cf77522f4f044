"""Run a trained tokenizer over image files: reconstructions as PNGs, codes as safetensors.

Both read through :func:`vqrae.data.sources.iter_batches` (the one batching path of the project)
and write through :func:`vqrae.data.images.save_image` / :func:`vqrae.utils.files.atomic_write`.
An unreadable file is handed to ``on_failure`` and skipped; the others are still processed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vqrae.data.images import save_image
from vqrae.data.sources import ImageSource, SourceRecord, iter_batches
from vqrae.tokenizer.model import VQRAE
from vqrae.utils.files import atomic_write
from vqrae.utils.runtime import autocast, default_precision

__all__ = ["BatchRun", "UniqueStems", "reconstruct_images", "tokenize_images"]

OnFailure = Callable[[SourceRecord], None]


@dataclass(frozen=True)
class BatchRun:
    """What a run over files did: images written, files that could not be read, resolution."""

    written: int
    failed: int
    size: int

    def summary(self, done: str) -> str:
        """``done``, plus the failure count when there were failures."""
        return done + (f"; {self.failed} failed" if self.failed else "")


class UniqueStems:
    """File stems, disambiguated with ``-2``, ``-3``... when two inputs share one."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, name: str) -> str:
        stem = Path(name).stem
        self._seen[stem] = self._seen.get(stem, 0) + 1
        count = self._seen[stem]
        return stem if count == 1 else f"{stem}-{count}"


def _batches(source: ImageSource, size: int, batch_size: int, desc: str, on_failure: OnFailure):
    """Yield (names, images (B, 3, size, size)) of readable images, with a progress bar."""
    with tqdm(total=len(source), desc=desc, unit="img", disable=None) as bar:
        for batch in iter_batches(source, batch_size, size):
            for record in batch.failures:
                on_failure(record)
            if len(batch):
                yield batch.names, batch.pixels
            bar.update(len(batch) + len(batch.failures))


@torch.no_grad()
def reconstruct_images(
    model: VQRAE,
    source: ImageSource,
    out_dir: Path,
    *,
    size: int,
    batch_size: int = 8,
    on_failure: OnFailure = lambda record: None,
) -> BatchRun:
    """Reconstruct every readable image of ``source`` through the codes into ``out_dir``.

    Files are named after the inputs' stems (``a.png``, then ``a-2.png`` for a second ``a``).
    """
    device = next(model.parameters()).device
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = UniqueStems()
    written = 0
    failures = _Counter(on_failure)
    for names, images in _batches(source, size, batch_size, "reconstruct", failures):
        with autocast(device, default_precision(device)):
            recon = model.reconstruct(images.to(device)).float()  # (B, 3, S, S)
        for name, image in zip(names, recon, strict=True):
            save_image(image, out_dir / f"{stem(name)}.png")
            written += 1
    return BatchRun(written=written, failed=failures.count, size=size)


class _Counter:
    """Counts failures while passing them on."""

    def __init__(self, on_failure: OnFailure) -> None:
        self.on_failure = on_failure
        self.count = 0

    def __call__(self, record: SourceRecord) -> None:
        self.count += 1
        self.on_failure(record)


@torch.no_grad()
def tokenize_images(
    model: VQRAE,
    source: ImageSource,
    out_path: Path,
    *,
    size: int,
    model_name: str,
    batch_size: int = 8,
    on_failure: OnFailure = lambda record: None,
) -> BatchRun:
    """Tokenize every readable image of ``source`` into one safetensors file at ``out_path``.

    The file holds ``indices`` (M, N) int32 for the M readable images in input order; its
    metadata holds ``files`` (JSON list of the source names), ``model``, ``image_size``,
    ``grid`` ("h,w") and ``codebook_size``.

    Raises:
        ValueError: no image could be read (nothing is written).
    """
    from safetensors.torch import save_file

    device = next(model.parameters()).device
    files: list[str] = []
    rows: list[torch.Tensor] = []
    failures = _Counter(on_failure)
    for names, images in _batches(source, size, batch_size, "tokenize", failures):
        with autocast(device, default_precision(device)):
            rows.append(model.tokenize(images.to(device)).to(torch.int32).cpu())  # (B, N)
        files.extend(names)
    if not rows:
        raise ValueError("no image could be read; nothing written")
    grid_h, grid_w = model.grid_for_size(size, size)
    metadata = {
        "files": json.dumps(files),
        "model": model_name,
        "image_size": str(size),
        "grid": f"{grid_h},{grid_w}",
        "codebook_size": str(model.config.codebook_size),
    }
    tensors = {"indices": torch.cat(rows).contiguous()}  # (M, N)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return BatchRun(written=len(files), failed=failures.count, size=size)
