"""Tests for PSNR / SSIM against scikit-image and for the data-range guard."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqrae.eval.metrics import gaussian_window, psnr, ssim, ssim_from_tensors

skmetrics = pytest.importorskip("skimage.metrics")


def _sk_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255) -> float:
    return float(
        skmetrics.structural_similarity(
            a,
            b,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
        )
    )


def _pair(
    seed: int, n: int = 3, h: int = 40, w: int = 33, noise: int = 25
) -> tuple[np.ndarray, ...]:
    """Smooth-ish uint8 images (N, H, W, 3) and a noisy copy."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, h // 4 + 1, w // 4 + 1, 3)).astype(np.float64)
    base = np.kron(base, np.ones((1, 4, 4, 1)))[:, :h, :w]
    a = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    b = np.clip(a.astype(np.int64) + rng.integers(-noise, noise + 1, a.shape), 0, 255)
    return a, b.astype(np.uint8)


def _to_float(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


def test_gaussian_window_matches_skimage_size() -> None:
    win = gaussian_window()
    assert win.numel() == 11
    assert torch.isclose(win.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.equal(win, win.flip(0))


@pytest.mark.parametrize("noise", [2, 25, 120])
def test_ssim_uint8_matches_skimage(noise: int) -> None:
    a, b = _pair(0, noise=noise)
    ours = ssim(a, b)
    assert isinstance(ours, np.ndarray) and ours.shape == (3,)
    ref = np.array([_sk_ssim(x, y) for x, y in zip(a, b, strict=True)])
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    assert abs(ssim(a[1], b[1]) - ref[1]) < 1e-4  # single image -> float


def test_ssim_float32_close_to_float64() -> None:
    a, b = _pair(1)
    np.testing.assert_allclose(ssim(a, b, dtype=torch.float32), ssim(a, b), atol=1e-5)


def test_ssim_float_unquantized_matches_skimage_on_unit_range() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((2, 24, 30, 3))
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    tx = torch.from_numpy(x).permute(0, 3, 1, 2)
    ty = torch.from_numpy(y).permute(0, 3, 1, 2)
    ours = ssim(tx, ty, quantize=False)
    ref = [_sk_ssim(p, q, data_range=1.0) for p, q in zip(x, y, strict=True)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4, rtol=0)


def test_float_images_score_like_their_uint8_png() -> None:
    a, b = _pair(3)
    fa, fb = _to_float(a), _to_float(b)
    for quantize in (True, False):
        np.testing.assert_allclose(ssim(fa, fb, quantize=quantize).numpy(), ssim(a, b), atol=1e-4)
        np.testing.assert_allclose(psnr(fa, fb, quantize=quantize).numpy(), psnr(a, b), atol=1e-4)
    # Quantization rounds like a saved PNG: a sub-level perturbation changes nothing.
    jitter = (fb + 0.4 / 255.0 * (torch.rand_like(fb) - 0.5)).clamp(0, 1)
    np.testing.assert_allclose(ssim(fa, jitter).numpy(), ssim(a, b), atol=1e-12)


def test_llamagen_data_range_is_rejected_and_would_inflate() -> None:
    a, b = _pair(4, noise=60)
    fa, fb = _to_float(a), _to_float(b)
    honest = ssim(fa, fb, quantize=False)
    with pytest.raises(ValueError, match="data_range"):
        ssim(fa, fb, data_range=2.0)
    with pytest.raises(ValueError, match="data_range"):
        ssim(a, b, data_range=1.0)
    assert torch.allclose(ssim(fa, fb, data_range=1.0), ssim(fa, fb))
    # What LlamaGen's data_range=2 on [0, 1] images does: SSIM goes up.
    inflated = ssim_from_tensors(fa.double(), fb.double(), data_range=2.0)
    assert (inflated > honest + 0.005).all()


def test_out_of_range_floats_rejected() -> None:
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ssim(x, x)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        psnr(x, x)


def test_psnr_matches_skimage_and_identity_is_inf() -> None:
    a, b = _pair(5)
    ref = [
        skmetrics.peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b, strict=True)
    ]
    np.testing.assert_allclose(psnr(a, b), ref, rtol=1e-12)
    assert math.isinf(psnr(a[0], a[0]))
    assert ssim(a[0], a[0]) == pytest.approx(1.0, abs=1e-12)


def test_torch_layouts_and_return_types() -> None:
    a, b = _pair(6, n=2)
    ta = torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).contiguous()
    out = ssim(ta, tb)  # uint8 tensors, channel-first
    assert isinstance(out, torch.Tensor) and out.shape == (2,) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ssim(a, b), atol=1e-12)
    assert isinstance(psnr(ta[0], tb[0]), float)


def test_bad_inputs() -> None:
    a, b = _pair(7, n=1)
    with pytest.raises(TypeError):
        ssim(a, _to_float(b))
    with pytest.raises(ValueError, match="shapes"):
        ssim(a, b[:, :-1])
    with pytest.raises(TypeError, match="uint8"):
        psnr(a.astype(np.float32), b.astype(np.float32))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[:, :8, :8], b[:, :8, :8])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    a, b = _pair(8)
    fa, fb = _to_float(a), _to_float(b)
    for fn in (psnr, ssim):
        gpu = fn(fa.cuda(), fb.cuda())
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), fn(fa, fb), atol=1e-10, rtol=0)
