"""The projector from visual features to the language model's embedding space, and token pooling.

LLaVA-1.5's ``mlp2x_gelu`` is ``Linear(d, h) -> GELU -> Linear(h, h)``; ``mlp{N}x_gelu`` has N
linear layers with a GELU between each, ``linear`` is one ``Linear(d, h)`` (LLaVA-1.0). GELU is
the exact (erf) form, as ``torch.nn.GELU()`` and transformers' ``"gelu"`` compute it.

:func:`pool_tokens` average-pools a token grid: a small language model on a CPU cannot afford
the demo tokenizer's 2304 tokens per image, and the pooled grid keeps its layout (a k x k grid in
raster order), so positions stay meaningful.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vqrae.mllm.config import parse_projector

__all__ = ["Projector", "pool_tokens"]


class Projector(nn.Module):
    """Visual features (..., d) -> language-model embeddings (..., h).

    Args:
        kind: ``linear``, ``mlp2x_gelu`` (the default of LLaVA-1.5) or ``mlp{N}x_gelu``.
        in_dim: the feature width d.
        out_dim: the language model's width h.

    The layers are ``self.layers`` (an ``nn.Sequential``: Linear, GELU, Linear, ...), so the
    state dict keys of ``mlp2x_gelu`` are ``layers.0.*`` and ``layers.2.*``, LLaVA's
    ``mm_projector.0`` / ``mm_projector.2``.
    """

    def __init__(self, kind: str, in_dim: int, out_dim: int) -> None:
        super().__init__()
        depth = parse_projector(kind)
        modules: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(depth - 1):
            modules += [nn.GELU(), nn.Linear(out_dim, out_dim)]
        self.kind = kind
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.layers = nn.Sequential(*modules)

    @property
    def linears(self) -> list[nn.Linear]:
        """The linear layers in order."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., h)."""
        return self.layers(features)


def pool_tokens(features: torch.Tensor, grid: tuple[int, int], size: int | None) -> torch.Tensor:
    """Average-pool tokens (B, h*w, d) in raster order on an (h, w) grid to (B, size*size, d).

    ``size`` ``None`` (or equal to the grid) returns the tokens unchanged. When ``size`` divides
    the grid's sides each output token is the plain mean of a block; otherwise the blocks of
    ``adaptive_avg_pool2d`` (overlapping by at most one token) are used.

    Raises:
        ValueError: the tokens do not fill the grid, or ``size`` exceeds a side.
    """
    grid_h, grid_w = grid
    if features.ndim != 3 or features.shape[1] != grid_h * grid_w:
        raise ValueError(
            f"expected tokens (B, {grid_h}*{grid_w}, d), got shape {tuple(features.shape)}"
        )
    if size is None or (size == grid_h and size == grid_w):
        return features
    if not 1 <= size <= min(grid_h, grid_w):
        raise ValueError(f"pool size {size} must be in [1, {min(grid_h, grid_w)}] for {grid}")
    maps = rearrange(features, "b (h w) d -> b d h w", h=grid_h, w=grid_w)
    pooled = F.adaptive_avg_pool2d(maps.float(), size).to(features.dtype)  # (B, d, k, k)
    return rearrange(pooled, "b d h w -> b (h w) d")  # (B, k*k, d)
