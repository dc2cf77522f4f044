"""LPIPS-VGG perceptual distance with weights from :mod:`vqrae.assets`.

The network is the ``lpips`` package's own (``lpips.LPIPS(net="vgg")``: five VGG16 ReLU taps,
unit-normalised channels, learned 1x1 "linear" layers, spatial mean), built with
``pnet_rand=True`` so torchvision downloads nothing, then loaded from the ``lpips-vgg16``
asset. Only the input preprocessing is chosen by the asset's ``config.json``: lpips'
``ScalingLayer`` computes ``(x - shift) / scale`` on [-1, 1] inputs, and its buffers are set so
that this equals the trunk's own normalisation ``(x01 * range - mean) / std``.

Caveat, stated plainly: the offline ``lpips-vgg16`` asset's trunk is the Keras/Caffe-lineage
ImageNet VGG16 (BGR 0..255 minus mean; the BGR flip is folded into its first conv), while the
lpips linear layers were calibrated on torchvision's VGG16 features. The result is a
perceptual distance of the same design that behaves sensibly (zero for identical images,
growing with blur and noise), but its absolute values are not the published LPIPS-VGG
numbers. A torchvision-trunk asset (``input.range`` 1, ImageNet mean/std) reproduces lpips'
own preprocessing exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

ASSET_NAME = "lpips-vgg16"
NUM_TAPS = 5


@contextmanager
def quiet_torchvision_pretrained() -> Iterator[None]:
    """lpips passes torchvision's deprecated ``pretrained=`` flag; silence only those notices."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*'pretrained' is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*weight enum or `None` for 'weights'.*")
        yield


def scaling_buffers(input_config: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """lpips ScalingLayer ``(shift, scale)`` equivalent to the trunk's input normalisation.

    With ``x = 2 * x01 - 1`` and the trunk wanting ``(x01 * R - mean) / std``:
    ``shift = 2 * mean / R - 1`` and ``scale = 2 * std / R``. For torchvision's ImageNet
    normalisation (R = 1) this gives lpips' own constants (-.030, -.088, -.188), (.458, .448, .450).
    """
    if input_config.get("color", "RGB") != "RGB":
        raise ValueError(f"trunk input must be RGB, got {input_config.get('color')!r}")
    value_range = float(input_config["range"])
    mean = torch.tensor(input_config["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(input_config["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return 2 * mean / value_range - 1, 2 * std / value_range


def trunk_to_lpips_keys(net: nn.Module, trunk: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Rename torchvision ``features.N.*`` to lpips' ``sliceK.N.*`` (looking up N's slice)."""
    where = {
        child: f"slice{k}"
        for k in range(1, net.N_slices + 1)
        for child in getattr(net, f"slice{k}")._modules
    }
    out = {}
    for key, value in trunk.items():
        _, index, param = key.split(".")
        out[f"{where[index]}.{index}.{param}"] = value
    return out


def split_weights(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Asset weights -> (trunk ``features.N.*``, per-tap linear layer state dicts)."""
    trunk = {k: v for k, v in state_dict.items() if k.startswith("features.")}
    linear = [
        {k.split(".", 1)[1]: v for k, v in state_dict.items() if k.startswith(f"lin{i}.")}
        for i in range(NUM_TAPS)
    ]
    leftover = (
        set(state_dict) - set(trunk) - {f"lin{i}.{k}" for i in range(NUM_TAPS) for k in linear[i]}
    )
    if leftover:
        raise KeyError(f"unexpected LPIPS weights: {sorted(leftover)}")
    return trunk, linear


class LPIPS(nn.Module):
    """Per-image LPIPS-VGG distance between two batches of images in [0, 1].

    Frozen and always in eval mode (calling ``.train()`` does not enable lpips' dropout), but
    differentiable with respect to its inputs, so it can serve as a training loss.

    Args:
        state_dict: asset weights (``features.N.*`` trunk + ``linK.model.1.weight``); loaded
            from the ``lpips-vgg16`` asset when None.
        config: asset config with an ``input`` section (``color``, ``range``, ``mean``,
            ``std``); from the asset when None.
    """

    def __init__(
        self,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import lpips

        if state_dict is None or config is None:
            from vqrae import assets

            state_dict = assets.load_state_dict(ASSET_NAME) if state_dict is None else state_dict
            config = assets.load_config(ASSET_NAME) if config is None else config
        with quiet_torchvision_pretrained():
            self.net = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
        self._load(state_dict, config)
        self.requires_grad_(False)
        self.eval()

    def _load(self, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> None:
        trunk, linear = split_weights(state_dict)
        self.net.net.load_state_dict(trunk_to_lpips_keys(self.net.net, trunk), strict=True)
        for layer, weights in zip(self.net.lins, linear, strict=True):
            layer.load_state_dict(weights, strict=True)
        shift, scale = scaling_buffers(config["input"])
        self.net.scaling_layer.shift.copy_(shift)
        self.net.scaling_layer.scale.copy_(scale)

    def train(self, mode: bool = True) -> LPIPS:
        """Stay in eval mode whatever ``mode`` is (the metric has no training behaviour)."""
        return super().train(False)

    def forward(self, images: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """Distances (B,) between ``images`` and ``other``, both (B, 3, H, W) in [0, 1]."""
        if images.shape != other.shape or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected two (B, 3, H, W) batches, got {tuple(images.shape)}, "
                f"{tuple(other.shape)}"
            )
        return self.net(images, other, normalize=True).flatten()  # (B,)


def load_lpips(device: torch.device | str | None = None) -> LPIPS:
    """LPIPS with the ``lpips-vgg16`` asset's weights, frozen, eval mode, on ``device``."""
    return LPIPS().to(device or "cpu")
