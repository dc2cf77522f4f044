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
MIN_PSNR = 23.4  # measured 23.97 dB
MIN_SSIM = 0.71  # measured 0.741
# The first 12 held-out shapes scenes at 224 px, with slack (measured ΔE 4.21, 97.6%, 98.4%; on
# the benchmark's 100 scenes: 4.92, 92.9%, 92.2%).
MAX_SHAPES_DELTA_E = 5.5
MIN_SHAPES_WITHIN_10 = 0.92
MIN_SHAPES_AGREEMENT = 0.93


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


def test_shipped_checkpoint_keeps_the_shapes_worlds_colours(dinov2_small_dir) -> None:
    """Held-out shapes scenes at 224 px (the first 12 of benchmarks/shapes_colours.py's 100):
    colours inside the shapes and the GenEval scorer's verdicts survive the round trip."""
    from vqrae.data.images import pil_to_tensor, tensor_to_pil
    from vqrae.eval.shapes_colours import held_out_scenes, measure
    from vqrae.eval.shapes_detector import ShapesDetector

    model = VQRAE.from_pretrained(NAME)

    def round_trip(images):
        with torch.no_grad():
            recon = model.reconstruct(torch.stack([pil_to_tensor(im) for im in images]))
        return [tensor_to_pil(r) for r in recon]

    result = measure(round_trip, NAME, held_out_scenes(12), 224, ShapesDetector())
    assert result.mean_delta_e <= MAX_SHAPES_DELTA_E
    assert result.within_10 >= MIN_SHAPES_WITHIN_10
    assert result.agreement >= MIN_SHAPES_AGREEMENT
