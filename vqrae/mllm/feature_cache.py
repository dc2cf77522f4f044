"""Image features computed once: the encoder is frozen in both LLaVA stages.

On two CPU cores the demo tokenizer's encoder (DINOv2-S, eight blocks at 672 px) costs about
0.6 s per image, several times the language model's step per sample; a frozen encoder gives the
same features every epoch and every stage, so they are computed once and read back.

Layout: ``<root>/<key>/shard_NNNNN.safetensors``, where ``key`` digests
:meth:`VisionFeatures.identity` (encoder configuration and weights, resolution, pooling, aspect
rule), so two stages, or two runs, with the same features share a cache and a changed encoder
gets a new one. The images (sorted, unique) are cut into shards of ``shard_size``; each shard
holds ``features`` (n, N, d) float16 and, in its metadata, the image paths it covers and those
that could not be read. A shard is written atomically, so a killed build resumes where it
stopped; under several processes each builds the shards ``i`` with ``i % world_size == rank``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vqrae.data.images import ImageReadError
from vqrae.mllm.vision import VisionFeatures
from vqrae.utils.distributed import DistributedContext
from vqrae.utils.files import atomic_write

__all__ = ["FeatureCache", "image_key"]

log = logging.getLogger(__name__)

SHARD_SIZE = 256


def image_key(path: str | os.PathLike[str]) -> str:
    """How an image is named in the cache: its absolute path (links not resolved)."""
    return os.path.abspath(os.fspath(path))


class FeatureCache:
    """Features of a fixed set of images under one :class:`VisionFeatures`.

    Args:
        root: the cache folder (shared by runs; a sub-folder per feature identity).
        vision: the features to compute.
        images: every image the run may need.
        shard_size: images per shard file.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        vision: VisionFeatures,
        images: Sequence[str],
        shard_size: int = SHARD_SIZE,
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        identity = vision.identity()
        self.vision = vision
        self.folder = Path(root) / hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.identity = identity
        self.images = sorted({image_key(p) for p in images})
        self.shard_size = shard_size
        self._features: dict[str, torch.Tensor] = {}
        self.failed: dict[str, str] = {}

    @property
    def num_shards(self) -> int:
        return -(-len(self.images) // self.shard_size)

    def _shard_path(self, index: int) -> Path:
        return self.folder / f"shard_{index:05d}.safetensors"

    def _shard_images(self, index: int) -> list[str]:
        return self.images[index * self.shard_size : (index + 1) * self.shard_size]

    # ------------------------------------------------------------------ build
    def build(
        self,
        context: DistributedContext,
        batch_size: int = 16,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Compute the missing shards (this process's share), then wait for every process.

        Collective: every process calls it. ``on_progress(n)`` is called after each batch of
        ``n`` images (a progress bar).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        identity_file = self.folder / "identity.json"
        if context.is_main and not identity_file.is_file():
            atomic_write(identity_file, lambda tmp: tmp.write_text(self.identity + "\n"))
        for index in range(self.num_shards):
            if index % context.world_size != context.rank:
                continue
            if self._valid_shard(index):
                if on_progress is not None:
                    on_progress(len(self._shard_images(index)))
                continue
            self._build_shard(index, batch_size, on_progress)
        context.barrier()

    def _valid_shard(self, index: int) -> bool:
        path = self._shard_path(index)
        if not path.is_file():
            return False
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        covered = json.loads(meta.get("images", "[]")) + list(json.loads(meta.get("failed", "{}")))
        return sorted(covered) == self._shard_images(index)

    @torch.no_grad()
    def _build_shard(
        self, index: int, batch_size: int, on_progress: Callable[[int], None] | None
    ) -> None:
        device = next(self.vision.tokenizer.parameters()).device
        started = time.perf_counter()
        kept: list[str] = []
        failed: dict[str, str] = {}
        features: list[torch.Tensor] = []
        images = self._shard_images(index)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            tensors, names = [], []
            for name in chunk:
                try:
                    tensors.append(self.vision.load(name))
                    names.append(name)
                except ImageReadError as exc:
                    failed[name] = exc.reason
            if tensors:
                batch = torch.stack(tensors).to(device)  # (b, 3, S, S)
                features.append(self.vision(batch).to(torch.float16).cpu())  # (b, N, d)
                kept += names
            if on_progress is not None:
                on_progress(len(chunk))
        if failed:
            log.warning(
                "feature cache: %d unreadable image(s), e.g. %s", len(failed), next(iter(failed))
            )
        stacked = (
            torch.cat(features)
            if features
            else torch.zeros(0, self.vision.num_tokens, self.vision.dim, dtype=torch.float16)
        )
        meta = {"images": json.dumps(kept), "failed": json.dumps(failed)}
        path = self._shard_path(index)
        atomic_write(path, lambda tmp: save_file({"features": stacked}, str(tmp), metadata=meta))
        seconds = time.perf_counter() - started
        log.info(
            "feature cache: shard %d of %d, %d image(s) in %.0f s (%.2f s/image)",
            index + 1,
            self.num_shards,
            len(images),
            seconds,
            seconds / max(len(images), 1),
        )

    # ------------------------------------------------------------------ read
    def load(self) -> None:
        """Read every shard into memory (float16), with the unreadable images in :attr:`failed`.

        Raises:
            RuntimeError: a shard is missing or does not cover its images (build first).
        """
        self._features.clear()
        self.failed.clear()
        for index in range(self.num_shards):
            if not self._valid_shard(index):
                raise RuntimeError(f"{self._shard_path(index)} is missing or stale: build first")
            with safe_open(str(self._shard_path(index)), framework="pt") as handle:
                meta = handle.metadata() or {}
                features = handle.get_tensor("features")
            names = json.loads(meta.get("images", "[]"))
            self.failed.update(json.loads(meta.get("failed", "{}")))
            self._features.update(zip(names, features, strict=True))

    def __contains__(self, path: str) -> bool:
        return image_key(path) in self._features

    def __getitem__(self, path: str) -> torch.Tensor:
        """The features (N, d) float16 of an image."""
        return self._features[image_key(path)]
