"""Stage-1 feature cache: a frozen encoder's features of every training image, computed once.

In stage 1 the encoder does not train, so its output for a given image never changes. Computing
it once per image (on the evaluation centre crop) and training on the stored features removes
the encoder from every step: for DINOv2-S reading 672 px inputs (eight blocks) that is ~0.6 s
per image on two CPU cores. The price is augmentation: training then sees each image's centre crop only.

The cache is one ``torch.save`` file written atomically, keyed by everything that determines
its content (encoder configuration, its weights' checksum, image size, the item list), so a
resumed run reuses it and a changed recipe rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from vqrae.data.training import SampleRef, TrainImageDataset
from vqrae.utils.files import atomic_write
from vqrae.utils.runtime import autocast

__all__ = ["CachedFeatures", "CachedFeatureDataset", "collate_cached", "load_or_build_cache"]

log = logging.getLogger(__name__)


@dataclass
class CachedFeatures:
    """Training items with their encoder features.

    Attributes:
        indices: collection indices of the readable training items (N,).
        images: their centre crops, uint8 (N, 3, S, S).
        features: the encoder's features, float16 (N, T, d).
        skipped: training items that could not be read.
    """

    indices: list[int]
    images: torch.Tensor
    features: torch.Tensor
    skipped: int


def _cache_key(model, image_size: int, items: Sequence[int], collection: object) -> str:
    encoder = model.encoder
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        digest.update(str(tuple(tensor.shape)).encode())
    record = {
        "encoder": model.config.encoder,
        "encoder_scale": model.config.encoder_scale,
        "encoder_layer": model.config.encoder_layer,
        "final_norm": model.config.encoder_final_norm,
        "weights": digest.hexdigest(),
        "image_size": image_size,
        "items": hashlib.sha256(json.dumps(list(items)).encode()).hexdigest(),
        "collection": str(collection),
    }
    return json.dumps(record, sort_keys=True)


@torch.no_grad()
def _build(
    model, dataset: TrainImageDataset, items: Sequence[int], device, precision, batch_size: int
) -> CachedFeatures:
    kept: list[int] = []
    images: list[torch.Tensor] = []
    features: list[torch.Tensor] = []
    skipped = 0
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc="feature cache", unit="img", dynamic_ncols=True)
    except ImportError:  # pragma: no cover - tqdm ships with the train extra
        bar = None
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        loaded = [(index, dataset[index]) for index in chunk]
        readable = [(index, image) for index, image in loaded if image is not None]
        skipped += len(chunk) - len(readable)
        if readable:
            batch = torch.stack([image for _, image in readable])  # (b, 3, S, S)
            with autocast(device, precision):
                feats = model.encode(batch.to(device)).float()  # (b, T, d)
            kept.extend(index for index, _ in readable)
            images.append((batch * 255).round().to(torch.uint8))
            features.append(feats.cpu().to(torch.float16))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if not kept:
        raise ValueError("feature cache: none of the training images could be read")
    return CachedFeatures(kept, torch.cat(images), torch.cat(features), skipped)


def load_or_build_cache(
    path: Path,
    model,
    dataset: TrainImageDataset,
    items: Sequence[int],
    device: torch.device,
    precision: str,
    context,
    batch_size: int = 16,
) -> CachedFeatures:
    """The cache at ``path`` when its key matches, else built by the main process and saved.

    Collective: every process calls it; the others wait for the main process and read its file.
    """
    key = _cache_key(model, dataset.size, items, dataset.collection)
    if context.is_main:
        cached = _read(path, key)
        if cached is None:
            log.info("computing encoder features of %d training images", len(items))
            cached = _build(model, dataset, items, device, precision, batch_size)
            payload = {
                "key": key,
                "indices": torch.tensor(cached.indices),
                "images": cached.images,
                "features": cached.features,
                "skipped": cached.skipped,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: torch.save(payload, tmp))
    context.barrier()
    if not context.is_main:
        cached = _read(path, key)
        if cached is None:
            raise RuntimeError(f"{path}: the main process's feature cache is missing or stale")
    return cached


def _read(path: Path, key: str) -> CachedFeatures | None:
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("key") != key:
        log.info("%s was built for another encoder, image size or split; rebuilding", path)
        return None
    return CachedFeatures(
        payload["indices"].tolist(),
        payload["images"],
        payload["features"],
        int(payload["skipped"]),
    )


class CachedFeatureDataset(Dataset):
    """Items of a :class:`CachedFeatures` addressed by collection index (as the sampler hands
    them out): ``((image (3, S, S) float, features (T, d) float), 0 skipped)``."""

    def __init__(self, cache: CachedFeatures) -> None:
        self.cache = cache
        self._position = {index: i for i, index in enumerate(cache.indices)}

    def __len__(self) -> int:
        return len(self.cache.indices)

    def __getitem__(self, ref: SampleRef | int):
        index = ref.index if isinstance(ref, SampleRef) else ref
        i = self._position[index]
        image = self.cache.images[i].float() / 255.0
        return (image, self.cache.features[i].float()), 0


def collate_cached(batch) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
    """Stack cached items: ((images (B, 3, S, S), features (B, T, d)), 0)."""
    images = torch.stack([item[0][0] for item in batch])
    features = torch.stack([item[0][1] for item in batch])
    return (images, features), 0
