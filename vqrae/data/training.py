"""Training data: random access to image sources, a seeded train/val split, augmentation, and a
sampler whose position is a pure function of the optimizer step.

Everything random is derived from ``(seed, epoch, position)``: the epoch's permutation, each
sample's crop and flip. A run resumed at step ``s`` therefore sees exactly the batches an
uninterrupted run would, on any number of processes, with no sampler state to save.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from vqrae.data.images import center_crop_resize, pil_to_tensor
from vqrae.data.sources import TRAIN_SPLITS, ImageSource, open_source

__all__ = [
    "StepSampler",
    "TrainImageDataset",
    "collate_images",
    "open_collection",
    "split_indices",
]


def open_collection(source: str | os.PathLike, split: str | None = None) -> ImageSource:
    """Open training data for random access: an image folder, a ``save_to_disk`` dataset or
    ``hf:NAME[:split]`` (a dataset's ``train`` split unless another is named)."""
    return open_source(source, split=split, prefer=TRAIN_SPLITS)


def split_indices(num_items: int, val_count: int, seed: int) -> tuple[list[int], list[int]]:
    """A fixed (train, val) split of ``range(num_items)`` determined by ``seed``."""
    if not 0 <= val_count < num_items:
        raise ValueError(f"val_count must be in [0, {num_items}), got {val_count}")
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[val_count:]), sorted(order[:val_count])


def _item_seed(*parts: int) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class SampleRef:
    """What the sampler hands the dataset: which item, and the seed of its augmentation."""

    index: int
    aug_seed: int


class TrainImageDataset(Dataset):
    """Items of a collection with training augmentation or the evaluation crop.

    Training: the shorter side is resized to ``size * U(1, max_scale)``, a random
    ``size`` x ``size`` crop is taken and flipped horizontally with probability 1/2, all drawn
    from the reference's seed. An unreadable item is replaced by the next readable one of
    ``pool`` (the training split), so every batch keeps its size on every process; items come
    back as ``(image, number of unreadable items skipped)``. Evaluation (``train=False``)
    returns the centre crop of :func:`center_crop_resize`, or ``None`` for an unreadable item.
    """

    def __init__(
        self,
        collection: ImageSource,
        size: int,
        train: bool = True,
        max_scale: float = 1.25,
        pool: Sequence[int] | None = None,
    ) -> None:
        if max_scale < 1.0:
            raise ValueError(f"max_scale must be >= 1, got {max_scale}")
        self.collection = collection
        self.size = size
        self.train = train
        self.max_scale = max_scale
        self.pool = list(pool) if pool is not None else list(range(len(collection)))
        self._pool_position = {index: i for i, index in enumerate(self.pool)}

    def __len__(self) -> int:
        return len(self.collection)

    def __getitem__(self, ref: SampleRef | int):
        if not self.train:
            index = ref.index if isinstance(ref, SampleRef) else ref
            image = self.collection.load(index).image
            return None if image is None else pil_to_tensor(center_crop_resize(image, self.size))
        if isinstance(ref, int):
            ref = SampleRef(ref, 0)
        start = self._pool_position.get(ref.index, 0)
        for skipped in range(len(self.pool)):
            index = ref.index if skipped == 0 else self.pool[(start + skipped) % len(self.pool)]
            image = self.collection.load(index).image
            if image is not None:
                return self._augment(image, ref.aug_seed), skipped
        raise RuntimeError(f"{self.collection}: no readable image in the training split")

    def _augment(self, image: Image.Image, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        u = torch.rand(4, generator=generator).tolist()
        short = round(self.size * (1.0 + (self.max_scale - 1.0) * u[0]))
        scale = short / min(image.size)
        width, height = (max(short, round(x * scale)) for x in image.size)
        image = image.resize((width, height), resample=Image.BICUBIC)
        left = int(u[1] * (width - self.size + 1))
        top = int(u[2] * (height - self.size + 1))
        image = image.crop((left, top, left + self.size, top + self.size))
        tensor = pil_to_tensor(image)
        return tensor.flip(-1) if u[3] < 0.5 else tensor


def collate_images(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
    """Stack training items; returns (images (B, 3, H, W), unreadable items skipped)."""
    return torch.stack([image for image, _ in batch]), sum(skipped for _, skipped in batch)


class StepSampler(Sampler[SampleRef]):
    """Infinite, resumable sampler over ``indices`` for one process.

    The global sample stream is the concatenation of per-epoch permutations (seeded by
    ``(seed, epoch)``). Optimizer step ``s`` consumes positions ``[s*B, (s+1)*B)`` of it, split
    into ``accum`` micro-batches, each split contiguously across ``world_size`` processes. This
    process yields its share of every micro-batch from ``start_step`` on.
    """

    def __init__(
        self,
        indices: Sequence[int],
        global_batch: int,
        accum: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start_step: int = 0,
    ) -> None:
        if global_batch % (accum * world_size):
            raise ValueError(
                f"batch_size {global_batch} is not divisible by grad_accum x world size "
                f"({accum} x {world_size})"
            )
        self.indices = list(indices)
        self.global_batch = global_batch
        self.accum = accum
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_step = start_step
        self.micro = global_batch // (accum * world_size)
        self._perm_cache: dict[int, list[int]] = {}

    def _permutation(self, epoch: int) -> list[int]:
        if epoch not in self._perm_cache:
            generator = torch.Generator().manual_seed(_item_seed(self.seed, epoch))
            order = torch.randperm(len(self.indices), generator=generator).tolist()
            self._perm_cache = {epoch: [self.indices[i] for i in order]}
        return self._perm_cache[epoch]

    def ref_at(self, position: int) -> SampleRef:
        """The sample at global stream position ``position``."""
        epoch, offset = divmod(position, len(self.indices))
        index = self._permutation(epoch)[offset]
        return SampleRef(index, _item_seed(self.seed, epoch, offset, 1))

    def __iter__(self) -> Iterator[SampleRef]:
        step = self.start_step
        per_micro = self.global_batch // self.accum
        while True:
            for micro in range(self.accum):
                base = step * self.global_batch + micro * per_micro + self.rank * self.micro
                for j in range(self.micro):
                    yield self.ref_at(base + j)
            step += 1
