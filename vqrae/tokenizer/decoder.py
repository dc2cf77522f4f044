"""ViT pixel decoder: one token per latent, a linear head to p x p x 3, unpatchify.

Latents (B, N, d_in) are projected to the decoder width, given 2-D position embeddings, run
through pre-norm transformer blocks (timm ``Block``, which uses PyTorch's scaled-dot-product
attention and so FlashAttention kernels where CUDA provides them), normalised, and mapped to a
p x p RGB patch each. An optional :class:`ConvRefiner` (off by default; the paper's decoder has
no convolutions) smooths the seams between independently predicted patches, which short
trainings leave visible.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from einops import rearrange
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

__all__ = ["ConvRefiner", "ViTDecoder", "sincos_pos_embed_2d"]


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding (MAE style), (1, H*W, dim); dim must be divisible by 4."""
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    grid_h, grid_w = grid
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))  # (dim/4,)
    ys, xs = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    parts = []
    for coords in (ys.reshape(-1), xs.reshape(-1)):
        angles = np.outer(coords, omega)  # (H*W, dim/4)
        parts += [np.sin(angles), np.cos(angles)]
    emb = np.concatenate(parts, axis=1)  # (H*W, dim)
    return torch.from_numpy(emb).float().unsqueeze(0)


class ConvRefiner(nn.Module):
    """Residual 3x3 convolutions over the decoded image: ``x + f(x)``, (B, 3, H, W) -> same.

    ``f`` is conv(3->c), GELU, conv(c->c), GELU, conv(c->3) (a 7 x 7 receptive field); its last
    convolution starts at zero, so a refiner added to a trained decoder starts as the identity.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"refiner channels must be >= 1, got {channels}")
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, 3, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + self.net(images)


class ViTDecoder(nn.Module):
    """Transformer decoder from latent tokens to pixels.

    Args:
        in_dim: latent width d_in (the encoder's feature width).
        width: transformer width.
        depth: number of blocks.
        num_heads: attention heads.
        patch_size: pixels per token side p (the encoder's patch size).
        grid_size: token grid (h, w) the learned position embedding is stored for; other grids
            are served by interpolating it.
        mlp_ratio: MLP hidden width / width.
        refine_channels: width of a :class:`ConvRefiner` on the output (0: none).
    """

    def __init__(
        self,
        in_dim: int,
        width: int,
        depth: int,
        num_heads: int,
        patch_size: int,
        grid_size: tuple[int, int],
        mlp_ratio: float = 4.0,
        refine_channels: int = 0,
    ) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"decoder width {width} is not divisible by num_heads {num_heads}")
        self.patch_size = patch_size
        self.grid_size = tuple(grid_size)
        self.embed = nn.Linear(in_dim, width)
        self.pos_embed = nn.Parameter(torch.empty(1, self.grid_size[0] * self.grid_size[1], width))
        self.blocks = nn.Sequential(
            *[Block(width, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, patch_size * patch_size * 3)
        self._init_weights()
        self.refiner = ConvRefiner(refine_channels) if refine_channels else None

    def _init_weights(self) -> None:
        if not self.pos_embed.is_meta:
            with torch.no_grad():  # learnable, initialised at the fixed 2-D sin-cos embedding
                self.pos_embed.copy_(sincos_pos_embed_2d(self.pos_embed.shape[-1], self.grid_size))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(
        self, latents: torch.Tensor, grid_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Decode latents (B, N, d_in) on a (h, w) grid to images (B, 3, h*p, w*p).

        The output is in the normalised pixel space [-1, 1] (unclamped); :class:`VQRAE` maps it
        to [0, 1].
        """
        batch, num_tokens, _ = latents.shape
        grid_h, grid_w = grid_size if grid_size is not None else _square_grid(num_tokens)
        if grid_h * grid_w != num_tokens:
            raise ValueError(f"grid {grid_h}x{grid_w} does not hold {num_tokens} tokens")
        pos = self.pos_embed
        if (grid_h, grid_w) != self.grid_size:
            pos = resample_abs_pos_embed(
                pos, new_size=(grid_h, grid_w), old_size=self.grid_size, num_prefix_tokens=0
            )
        x = self.embed(latents) + pos  # (B, N, width)
        x = self.blocks(x)
        x = self.head(self.norm(x))  # (B, N, p*p*3)
        p = self.patch_size
        images = rearrange(
            x, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=grid_h, w=grid_w, p1=p, p2=p
        )  # (B, 3, h*p, w*p)
        return images if self.refiner is None else self.refiner(images)


def _square_grid(num_tokens: int) -> tuple[int, int]:
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"{num_tokens} tokens do not form a square grid; pass grid_size")
    return side, side
