"""LPIPS-VGG on the converted Keras trunk: behaves as a perceptual distance on real images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from vqrae import assets
from vqrae.convert import vgg16_onnx
from vqrae.eval.perceptual import LPIPS, load_lpips, scaling_buffers

SIZE = 128
BLUR_SIGMAS = (0.5, 1.0, 2.0, 4.0)
NOISE_STDS = (0.02, 0.05, 0.1, 0.2)


@pytest.fixture(scope="module")
def lpips_model(lpips_vgg16_dir: Path) -> LPIPS:
    return load_lpips()


@pytest.fixture(scope="module")
def images(imagenet_sample_dir: Path, load_images: Callable[..., torch.Tensor]) -> torch.Tensor:
    paths = sorted(imagenet_sample_dir.glob("*.JPEG"))[17::333]  # 3 unrelated classes
    return load_images(paths, SIZE)


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = 2 * int(3 * sigma) + 1
    return gaussian_blur(images, kernel_size=[kernel, kernel], sigma=[sigma, sigma])


def _noise(images: torch.Tensor, std: float) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    return (images + std * noise).clamp(0, 1)


def test_scaling_reproduces_lpips_constants_for_a_torchvision_trunk() -> None:
    config = {"color": "RGB", "range": 1.0, "mean": [0.485, 0.456, 0.406]}
    shift, scale = scaling_buffers({**config, "std": [0.229, 0.224, 0.225]})
    torch.testing.assert_close(shift.flatten(), torch.tensor([-0.030, -0.088, -0.188]))
    torch.testing.assert_close(scale.flatten(), torch.tensor([0.458, 0.448, 0.450]))


def test_keras_preprocessing_from_config(lpips_model: LPIPS) -> None:
    x01 = torch.rand(1, 3, 4, 4)
    trunk_input = lpips_model.net.scaling_layer(2 * x01 - 1)
    mean_rgb = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)
    torch.testing.assert_close(trunk_input, 255 * x01 - mean_rgb, rtol=0, atol=1e-3)
    assert assets.load_config("lpips-vgg16")["input"]["color"] == "RGB"


def test_identical_images_have_zero_distance(lpips_model: LPIPS, images: torch.Tensor) -> None:
    with torch.no_grad():
        distance = lpips_model(images, images.clone())
    assert distance.shape == (len(images),)
    assert distance.abs().max() < 1e-6


def test_distance_grows_with_blur_and_noise(lpips_model: LPIPS, images: torch.Tensor) -> None:
    with torch.no_grad():
        blur = torch.stack([lpips_model(images, _blur(images, s)) for s in BLUR_SIGMAS])
        noise = torch.stack([lpips_model(images, _noise(images, s)) for s in NOISE_STDS])
        other = lpips_model(images, images.roll(1, dims=0))  # unrelated image pairs
    print(f"LPIPS mean by blur sigma {BLUR_SIGMAS}: {np.round(blur.mean(1).tolist(), 3)}")
    print(f"LPIPS mean by noise std {NOISE_STDS}: {np.round(noise.mean(1).tolist(), 3)}")
    print(f"LPIPS mean between different images: {other.mean().item():.3f}")
    assert (blur.diff(dim=0) > 0).all() and (noise.diff(dim=0) > 0).all()  # per image
    assert (blur[0] < other).all() and (noise[0] < other).all()


def test_symmetric(lpips_model: LPIPS, images: torch.Tensor) -> None:
    noisy = _noise(images, 0.1)
    with torch.no_grad():
        torch.testing.assert_close(lpips_model(images, noisy), lpips_model(noisy, images))


def test_frozen_but_differentiable_wrt_inputs(lpips_model: LPIPS, images: torch.Tensor) -> None:
    lpips_model.train()
    assert not lpips_model.training and not lpips_model.net.lin0.training  # no dropout
    assert not any(p.requires_grad for p in lpips_model.parameters())
    recon = _blur(images, 1.0).requires_grad_(True)
    lpips_model(recon, images).sum().backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0
    assert all(p.grad is None for p in lpips_model.parameters())


def test_trunk_matches_onnx_on_real_images(
    lpips_vgg16_dir: Path, images: torch.Tensor, tmp_path: Path
) -> None:
    members = assets.fetch_source("lpips-vgg16", tmp_path)
    trunk = {k: v for k, v in assets.load_state_dict("lpips-vgg16").items() if k[0] == "f"}
    diff = vgg16_onnx.taps_max_rel_diff(members[vgg16_onnx.ONNX_MEMBER], trunk, images * 255)
    print(f"VGG16 trunk max relative diff vs onnxruntime (BGR graph): {diff:.2e}")
    assert diff <= 1e-4


def test_trunk_features_are_imagenet_semantic(
    lpips_model: LPIPS, imagenet_sample_dir: Path, load_images: Callable[..., torch.Tensor]
) -> None:
    """relu5_3 nearest neighbours of the 118 dog images are dogs (a random trunk: ~0.7)."""
    paths = sorted(imagenet_sample_dir.glob("*.JPEG"))
    dogs = [p for p in paths if "n02085620" <= p.name[:9] <= "n02113978"]
    others = [p for p in paths if p not in dogs][::11][:82]
    images = load_images(dogs + others, 112)
    net, scaling = lpips_model.net.net, lpips_model.net.scaling_layer
    with torch.no_grad():
        feats = torch.cat([net(scaling(2 * b - 1)).relu5_3.mean((2, 3)) for b in images.split(50)])
    unit = torch.nn.functional.normalize(feats, dim=-1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-2.0)
    rate = (similarity[: len(dogs)].argmax(dim=1) < len(dogs)).float().mean().item()
    print(f"VGG16 relu5_3: dog 1-NN is a dog for {rate:.3f} of dogs")
    assert rate >= 0.9
