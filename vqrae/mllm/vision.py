"""The frozen visual half of an understanding model: image -> square crop -> features -> pooling.

The features are the tokenizer's continuous ``VQRAE.encode`` output Z_I (no quantization
error, the paper's understanding path), pooled to ``pool x pool`` tokens when asked. Nothing
here trains: in both LLaVA stages the encoder is frozen, which is what lets a trainer compute
each image's features once (:mod:`vqrae.mllm.feature_cache`).
"""

from __future__ import annotations

import hashlib
import json
import os

import torch
from PIL import Image
from torch import nn

from vqrae.data.images import center_crop_resize, load_image, pil_to_tensor
from vqrae.mllm.config import ImageAspect
from vqrae.mllm.projector import pool_tokens
from vqrae.tokenizer.model import VQRAE

__all__ = ["VisionFeatures", "expand_to_square"]


def expand_to_square(image: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """Pad the shorter side of ``image`` with ``colour``, centred (LLaVA's ``expand2square``)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new("RGB", (side, side), colour)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


class VisionFeatures(nn.Module):
    """A frozen VQRAE tokenizer's features, pooled: images (B, 3, S, S) -> (B, N, d).

    Args:
        tokenizer: a trained VQRAE; frozen here (no gradients, eval mode).
        pool: pooled grid side (``None``: every token).
        aspect: ``"pad"`` or ``"crop"`` (see :data:`vqrae.mllm.config.ImageAspect`).
    """

    def __init__(self, tokenizer: VQRAE, pool: int | None = None, aspect: ImageAspect = "pad"):
        super().__init__()
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.pool = pool
        self.aspect = aspect
        grid = self.grid
        if pool is not None and pool > min(grid):
            raise ValueError(f"pool {pool} exceeds the tokenizer's {grid[0]}x{grid[1]} token grid")

    # ------------------------------------------------------------------ facts
    @property
    def image_size(self) -> int:
        """The square side images are brought to (the tokenizer's resolution)."""
        return self.tokenizer.config.image_size

    @property
    def grid(self) -> tuple[int, int]:
        """The tokenizer's token grid at :attr:`image_size`."""
        return self.tokenizer.grid_for_size(self.image_size, self.image_size)

    @property
    def num_tokens(self) -> int:
        """Tokens per image after pooling."""
        return self.pool * self.pool if self.pool is not None else self.grid[0] * self.grid[1]

    @property
    def dim(self) -> int:
        """The feature width d."""
        return self.tokenizer.encoder.dim

    @property
    def pad_colour(self) -> tuple[int, int, int]:
        """The encoder's mean colour in 8-bit levels (LLaVA pads with the processor's mean)."""
        mean = self.tokenizer.encoder.mean.flatten().tolist()
        return tuple(int(round(255 * m)) for m in mean)  # type: ignore[return-value]

    def identity(self) -> str:
        """What determines the features: the encoder's configuration, a checksum of its
        weights, the resolution, the pooling and the aspect rule (a cache key)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.tokenizer.encoder.state_dict().items()):
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        config = self.tokenizer.config
        record = {
            "encoder": config.encoder,
            "encoder_layer": config.encoder_layer,
            "encoder_final_norm": config.encoder_final_norm,
            "encoder_scale": config.encoder_scale,
            "weights": digest.hexdigest(),
            "image_size": self.image_size,
            "pool": self.pool,
            "aspect": self.aspect,
        }
        return json.dumps(record, sort_keys=True)

    # ------------------------------------------------------------------ images
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """An RGB image -> the square input (3, S, S) in [0, 1]."""
        if self.aspect == "pad":
            image = expand_to_square(image, self.pad_colour)
        return pil_to_tensor(center_crop_resize(image, self.image_size))

    def load(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """Read and preprocess an image file: (3, S, S).

        Raises:
            vqrae.data.images.ImageReadError: the file is missing or not an image.
        """
        return self.preprocess(load_image(path))

    # ------------------------------------------------------------------ features
    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of square images (B, 3, S, S) in [0, 1]: (B, N, d) float32."""
        features = self.tokenizer.encode(images)  # (B, h*w, d)
        grid = self.tokenizer.grid_for(images)
        return pool_tokens(features.float(), grid, self.pool)  # (B, N, d)
