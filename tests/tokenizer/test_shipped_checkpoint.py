"""The trained demo tokenizer shipped under checkpoints/: size, loading by name, and quality on
natural photographs that are not from its training data (scikit-image's bundled photos)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vqrae import assets
from vqrae.data.images import center_crop_resize, pil_to_tensor
from vqrae.eval.metrics import psnr, ssim
from vqrae.tokenizer.model import VQRAE

NAME = "vqrae-dinov2-s-demo"
CHECKPOINT = assets.shipped_path(assets.get_spec(NAME))
pytestmark = pytest.mark.skipif(CHECKPOINT is None, reason=f"no checkpoints/{NAME} in this tree")

# Measured on these four photos when the checkpoint was committed (BENCHMARKS.md), minus 0.5 dB /
# 0.03 of slack for numeric differences across machines.
MIN_PSNR = 22.1  # measured 22.68 dB
MIN_SSIM = 0.67  # measured 0.703


def _photos(size: int) -> torch.Tensor:
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    images = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        array = np.asarray(getattr(skimage_data, name)())[..., :3]
        images.append(pil_to_tensor(center_crop_resize(Image.fromarray(array), size)))
    return torch.stack(images)  # (4, 3, S, S)


def test_shipped_checkpoint_is_small_and_loads_by_name(dinov2_small_dir) -> None:
    size = sum(f.stat().st_size for f in CHECKPOINT.iterdir() if f.is_file())
    assert size <= 25 * 2**20
    config = json.loads((CHECKPOINT / "config.json").read_text())
    assert config["omitted_weights"]["encoder"] == "pretrained"  # only what differs is stored
    model = VQRAE.from_pretrained(NAME)
    assert model.config.encoder == "dinov2-small" and not model.training


def test_shipped_checkpoint_reconstructs_unseen_photos(dinov2_small_dir) -> None:
    model = VQRAE.from_pretrained(NAME)
    images = _photos(model.config.image_size)
    with torch.no_grad():
        recon = model.reconstruct(images)
    assert recon.shape == images.shape
    assert float(psnr(images, recon).mean()) >= MIN_PSNR
    assert float(ssim(images, recon).mean()) >= MIN_SSIM
