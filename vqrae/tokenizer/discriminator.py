"""Patch discriminator and the adversarial losses (hinge, LeCam).

The discriminator is a small convolutional PatchGAN: it scores overlapping patches of an image
(one logit per patch) rather than the whole image, which is what sharpens texture without
asking it to judge global layout. GroupNorm instead of BatchNorm keeps it independent of the
batch composition (and so of the number of processes).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["LeCamEMA", "PatchDiscriminator", "hinge_d_loss"]


class PatchDiscriminator(nn.Module):
    """Convolutional patch discriminator.

    Args:
        channels: width of the first layer; doubles per downsampling layer up to 8x.
        num_layers: number of stride-2 layers (each halves the resolution).
    Input images are in [0, 1] (B, 3, H, W); the output is a logit map (B, 1, h, w).
    """

    def __init__(self, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = [
            nn.Conv2d(3, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        width = channels
        for i in range(1, num_layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False),
                nn.GroupNorm(min(32, out // 4), out),
                nn.LeakyReLU(0.2),
            ]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch logits (B, 1, h, w) of images (B, 3, H, W) in [0, 1]."""
        return self.net(images * 2.0 - 1.0)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


class LeCamEMA(nn.Module):
    """LeCam regularisation (Tseng et al., 2021) with exponential moving averages of the logits.

    ``reg = mean(relu(D(real) - ema_fake)^2) + mean(relu(ema_real - D(fake))^2)``; it keeps the
    discriminator's predictions from drifting apart when data are scarce. The averages are
    buffers, so they are checkpointed with the discriminator.
    """

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        """Fold this step's mean logits into the averages."""
        means = torch.stack([real_logits.float().mean(), fake_logits.float().mean()])
        if dist.is_available() and dist.is_initialized():  # identical averages on every process
            dist.all_reduce(means)
            means /= dist.get_world_size()
        real, fake = means[0], means[1]
        if not bool(self.initialised):
            self.ema_real.copy_(real)
            self.ema_fake.copy_(fake)
            self.initialised.fill_(True)
            return
        self.ema_real.lerp_(real, 1.0 - self.decay)
        self.ema_fake.lerp_(fake, 1.0 - self.decay)

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return (
            F.relu(real_logits - self.ema_fake).pow(2).mean()
            + F.relu(self.ema_real - fake_logits).pow(2).mean()
        )
