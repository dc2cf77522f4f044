"""Pixel-space reconstruction metrics: PSNR and SSIM.

Both metrics accept either

* ``uint8`` numpy arrays, channel-last: ``(H, W, C)`` for one image or ``(N, H, W, C)`` for a
  batch (what ``np.asarray(PIL.Image.open(...))`` gives), or
* torch tensors, channel-first: ``(C, H, W)`` or ``(B, C, H, W)``, either ``uint8`` or floating
  point in ``[0, 1]`` (what a decoder produces after ``clamp(0, 1)``).

Both inputs of one call must have the same kind, dtype and shape. A single image gives a Python
``float``; a batch gives one value per image: a numpy array ``(N,)`` for numpy input, a float64
tensor ``(B,)`` on the input's device for torch input. Average the per-image values over a data
set to report the usual numbers.

Float images are compared *as they would be saved*: with ``quantize=True`` (the default) they are
rounded to the 256 levels of an 8-bit PNG, ``floor(255 * x + 0.5)`` (torchvision's
``save_image`` rounding), so a float reconstruction and its saved PNG score identically. With
``quantize=False`` the float values are used as they are (data range 1).

SSIM follows Wang et al. (2004) as implemented by ``skimage.metrics.structural_similarity`` with
``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``: an 11x11 Gaussian window
(sigma 1.5, truncated at 3.5 sigma), population (co)variances, ``K1=0.01, K2=0.03``, the SSIM map
averaged over the valid region only (skimage filters with reflection and then crops
``(win - 1) // 2`` pixels per side, which equals a 'valid' convolution), then averaged over
channels. It is computed in torch (separable convolutions, float64 by default, on any device).

The data range is fixed by the input type: 255 for ``uint8`` (and quantized floats), 1 for
unquantized floats in ``[0, 1]``. A ``data_range`` argument is accepted only to reject wrong
values: LlamaGen evaluates ``[0, 1]`` images with ``data_range=2``, which enlarges the stabilising
constants C1 and C2 four-fold and inflates SSIM. Float inputs outside ``[0, 1]`` are rejected too
(clamp first; ``[-1, 1]`` images must be mapped with ``(x + 1) / 2``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ImageLike = np.ndarray | torch.Tensor
MetricValue = float | np.ndarray | torch.Tensor

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_TRUNCATE",
    "gaussian_window",
    "psnr",
    "ssim",
    "ssim_from_tensors",
]


def gaussian_window(
    sigma: float = SSIM_SIGMA,
    truncate: float = SSIM_TRUNCATE,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Return the normalised 1-D Gaussian taps that ``scipy.ndimage.gaussian_filter`` uses.

    The radius is ``int(truncate * sigma + 0.5)``, so sigma 1.5 with truncate 3.5 gives 11 taps.

    Args:
        sigma: Standard deviation in pixels.
        truncate: Truncate the window at this many standard deviations.
        dtype: Dtype of the result.
        device: Device of the result.

    Returns:
        Tensor of shape ``(2 * radius + 1,)`` summing to one.
    """
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def ssim_from_tensors(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float,
    sigma: float = SSIM_SIGMA,
    truncate: float = SSIM_TRUNCATE,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> torch.Tensor:
    """Low-level SSIM on prepared tensors, with no input checks beyond shapes.

    Prefer :func:`ssim`, which picks ``data_range`` from the input type. This kernel exists for
    callers that already hold float tensors on a known scale (and for tests that show what a
    wrong ``data_range`` does).

    Args:
        x: ``(B, C, H, W)`` floating tensor.
        y: Same shape and dtype as ``x``.
        data_range: Dynamic range of the pixel values (255 for 8-bit levels, 1 for ``[0, 1]``).
        sigma: Gaussian window standard deviation.
        truncate: Window truncation in standard deviations.
        k1: Luminance constant factor, ``C1 = (k1 * data_range) ** 2``.
        k2: Contrast constant factor, ``C2 = (k2 * data_range) ** 2``.

    Returns:
        ``(B,)`` tensor: the mean SSIM of each image over the valid region and channels.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"expected two (B, C, H, W) tensors of one shape, got {x.shape}, {y.shape}"
        )
    if not x.is_floating_point():
        raise ValueError(f"ssim_from_tensors needs floating tensors, got {x.dtype}")
    win = gaussian_window(sigma, truncate, dtype=x.dtype, device=x.device)
    size = win.numel()
    b, c, h, w = x.shape
    if h < size or w < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size} pixels, got {h}x{w}")
    # SSIM is invariant to a common rescaling of the pixels and of sqrt(C1), sqrt(C2): work on
    # the unit scale so E[x^2] - E[x]^2 loses little precision, even in float32.
    x = x / data_range
    y = y / data_range
    # Filter the five moments in one grouped separable 'valid' convolution.
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W)
    groups = stack.shape[1]
    k_h = win.view(1, 1, size, 1).expand(groups, 1, size, 1)
    k_w = win.view(1, 1, 1, size).expand(groups, 1, 1, size)
    moments = F.conv2d(F.conv2d(stack, k_h, groups=groups), k_w, groups=groups)
    mu_x, mu_y, m_xx, m_yy, m_xy = moments.split(c, dim=1)  # each (B, C, H', W')
    var_x = m_xx - mu_x * mu_x
    var_y = m_yy - mu_y * mu_y
    cov_xy = m_xy - mu_x * mu_y
    c1 = k1**2
    c2 = k2**2
    num = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=(1, 2, 3))  # (B,)


def _natural_range(img: ImageLike) -> float:
    return 255.0 if img.dtype in (np.uint8, torch.uint8) else 1.0


def _prepare(
    a: ImageLike,
    b: ImageLike,
    quantize: bool,
    data_range: float | None,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
    """Convert a pair of images to ``(B, C, H, W)`` tensors of ``dtype`` and their data range.

    Returns ``(x, y, data_range, batched)``.
    """
    if isinstance(a, np.ndarray) != isinstance(b, np.ndarray):
        raise TypeError(
            f"both images must be numpy arrays or both torch tensors, got {type(a)}, {type(b)}"
        )
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise ValueError(f"image dtypes differ: {a.dtype} vs {b.dtype}")
    natural = _natural_range(a)
    if data_range is not None and data_range != natural:
        raise ValueError(
            f"data_range={data_range} does not match {a.dtype} input, whose range is {natural:g} "
            "(255 for uint8, 1 for floats in [0, 1]); a larger range (e.g. LlamaGen's 2.0 on "
            "[0, 1] images) inflates SSIM"
        )
    if isinstance(a, np.ndarray):
        if a.dtype != np.uint8:
            raise TypeError(f"numpy images must be uint8 (H, W, C) or (N, H, W, C), got {a.dtype}")
        if a.ndim not in (3, 4):
            raise ValueError(f"numpy images must be (H, W, C) or (N, H, W, C), got {a.shape}")
        batched = a.ndim == 4
        x = torch.from_numpy(np.ascontiguousarray(a))
        y = torch.from_numpy(np.ascontiguousarray(b))
        if not batched:
            x, y = x[None], y[None]
        x = x.permute(0, 3, 1, 2)  # (B, C, H, W)
        y = y.permute(0, 3, 1, 2)
        return x.to(dtype), y.to(dtype), 255.0, batched
    if not isinstance(a, torch.Tensor):
        raise TypeError(f"unsupported image type {type(a)}")
    if a.ndim not in (3, 4):
        raise ValueError(f"torch images must be (C, H, W) or (B, C, H, W), got {tuple(a.shape)}")
    batched = a.ndim == 4
    x, y = (a, b) if batched else (a[None], b[None])
    if a.dtype == torch.uint8:
        return x.to(dtype), y.to(dtype), 255.0, batched
    if not a.is_floating_point():
        raise TypeError(f"torch images must be uint8 or floating point, got {a.dtype}")
    x = x.detach().to(dtype)
    y = y.detach().to(dtype)
    lo = torch.minimum(x.min(), y.min()).item()
    hi = torch.maximum(x.max(), y.max()).item()
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"float images must lie in [0, 1] (got values in [{lo:.4g}, {hi:.4g}]); "
            "clamp reconstructions and map [-1, 1] images with (x + 1) / 2 first"
        )
    if quantize:
        x = torch.floor(x * 255.0 + 0.5)
        y = torch.floor(y * 255.0 + 0.5)
        return x, y, 255.0, batched
    return x, y, 1.0, batched


def _finish(values: torch.Tensor, like: ImageLike, batched: bool) -> MetricValue:
    if not batched:
        return float(values[0].item())
    if isinstance(like, np.ndarray):
        return values.cpu().numpy()
    return values


def psnr(a: ImageLike, b: ImageLike, *, quantize: bool = True) -> MetricValue:
    """Peak signal-to-noise ratio in dB on the 0-255 scale, per image.

    ``PSNR = 10 log10(255^2 / MSE)`` with the MSE over all pixels and channels of one image
    (equal to ``skimage.metrics.peak_signal_noise_ratio(a, b, data_range=255)``). Identical images
    give ``inf``.

    Args:
        a: Reference image(s); see the module docstring for accepted layouts.
        b: Reconstructed image(s), same kind, dtype and shape.
        quantize: For float input, round to 8-bit levels first (as a saved PNG); ignored for
            uint8 input.

    Returns:
        A float for one image; for a batch, a numpy array ``(N,)`` (numpy input) or a float64
        tensor ``(B,)`` on the input device (torch input).
    """
    x, y, data_range, batched = _prepare(a, b, quantize, None, torch.float64)
    mse = (x - y).pow(2).mean(dim=(1, 2, 3))  # (B,)
    values = 10.0 * torch.log10(data_range**2 / mse)  # mse == 0 -> inf
    return _finish(values, a, batched)


def ssim(
    a: ImageLike,
    b: ImageLike,
    *,
    quantize: bool = True,
    data_range: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> MetricValue:
    """Structural similarity per image (Gaussian window, valid region, mean over channels).

    Matches ``skimage.metrics.structural_similarity(a, b, channel_axis=-1, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255)`` for uint8 images.

    Args:
        a: Reference image(s); see the module docstring for accepted layouts.
        b: Reconstructed image(s), same kind, dtype and shape.
        quantize: For float input, round to 8-bit levels first (as a saved PNG); ignored for
            uint8 input.
        data_range: Optional guard. ``None`` picks the range from the input (255 for uint8, 1 for
            floats in ``[0, 1]``); any other value than that raises ``ValueError``.
        dtype: Computation dtype. float64 (the default) reproduces skimage to ~1e-15; float32
            is ~10x faster on CPU and agrees to ~1e-6 (inputs are rescaled to unit range first).

    Returns:
        A float for one image; for a batch, a numpy array ``(N,)`` (numpy input) or a float64
        tensor ``(B,)`` on the input device (torch input).
    """
    x, y, rng, batched = _prepare(a, b, quantize, data_range, dtype)
    values = ssim_from_tensors(x, y, data_range=rng).to(torch.float64)
    return _finish(values, a, batched)
