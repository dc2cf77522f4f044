"""A non-editable install (as from a wheel) runs the shipped trained tokenizer.

The package is installed with pip into a temporary folder and run from another folder, so
nothing resolves through the repository: the trained checkpoint must come with the package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
NAME = "vqrae-dinov2-s-demo"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    if not (REPO / "checkpoints" / NAME / "model.safetensors").is_file():
        pytest.skip(f"no checkpoints/{NAME} in this tree")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(REPO)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return target


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("VQRAE_CHECKPOINTS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_installed_package_reconstructs_with_the_shipped_model(
    installed: Path, tmp_path: Path, dinov2_small_dir: Path
) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    photo = Image.fromarray(np.asarray(skimage_data.chelsea())[:, 75:375, :3])  # 300 x 300
    photo.resize((224, 224), Image.BICUBIC).save(tmp_path / "cat.png")
    where = _run(installed, tmp_path, "-c", "import vqrae; print(vqrae.__file__)")
    assert where.stdout.strip().startswith(str(installed)), where.stderr
    done = _run(installed, tmp_path, "-m", "vqrae.cli", "reconstruct", "cat.png", "--out", "out")
    assert done.returncode == 0, done.stderr
    original = np.asarray(Image.open(tmp_path / "cat.png"), dtype=np.float64)
    recon = np.asarray(Image.open(tmp_path / "out" / "cat.png"), dtype=np.float64)
    psnr = 10 * np.log10(255.0**2 / np.mean((original - recon) ** 2))
    assert psnr > 20.0  # the trained model; an untrained decoder gives noise (~8 dB)


def test_installed_package_refuses_an_untrained_variant_in_one_line(
    installed: Path, tmp_path: Path
) -> None:
    Image.new("RGB", (56, 56), (120, 30, 200)).save(tmp_path / "x.png")
    done = _run(
        installed, tmp_path, "-m", "vqrae.cli", "reconstruct", "x.png", "--model", "vqrae-dinov2-s"
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in done.stderr
    assert "vqrae.create_model" in lines[0] and not (tmp_path / "reconstructions").exists()
