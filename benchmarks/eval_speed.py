"""Evaluation-metric speed: vqrae's FID feature pass and SSIM against torchmetrics'.

Same inputs, same process, alternating run by run so machine noise hits both alike; reported
are median images/second over the repeats and the ratio vqrae / torchmetrics (> 1: vqrae is
faster). Compared:

* **FID feature pass**: ``FeatureStats.update(load_fid_inception()(x))`` against torchmetrics'
  ``FrechetInceptionDistance.update(x, real=True)`` (both: resize to 299, Inception-v3 pool
  features, float64 running sums), plus the bare networks. torchmetrics' network is
  torch-fidelity's ``FeatureExtractorInceptionV3``, whose weights are downloaded from GitHub on
  construction; when that is impossible (offline) the same architecture is built with untrained
  weights, which runs at the same speed (the numbers are then speed-only). Needs
  ``torch-fidelity`` (``pip install torch-fidelity``); skipped when it is missing.
* **SSIM**: :func:`vqrae.eval.metrics.ssim` (float64, the default, and float32) against
  ``torchmetrics.image.StructuralSimilarityIndexMeasure(gaussian_kernel=True, kernel_size=11,
  sigma=1.5, data_range=1.0)``. The per-image values are also compared. Both use the same
  11-tap Gaussian, population (co)variances and constants, but torchmetrics (1.9) reflect-pads
  the images by 5 px and averages the SSIM map over the full H x W, border values included
  (computed from mirrored pixels), while vqrae (like skimage) averages over the 'valid'
  (H - 10) x (W - 10) region only. That border accounts for the ~1e-3 difference of the means;
  cropping torchmetrics' full map (``return_full_image=True``) to the valid region agrees with
  vqrae to ~1e-6 (float32 rounding; ~1e-10 when torchmetrics runs in float64).

    .venv/bin/python benchmarks/eval_speed.py                    # 16 images of 256 px, 5 repeats
    .venv/bin/python benchmarks/eval_speed.py --batch 32 --size 224 --repeats 7 --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from unittest import mock

import torch

from vqrae.eval.fid import FeatureStats
from vqrae.eval.inception import load_fid_inception
from vqrae.eval.metrics import ssim
from vqrae.utils.runtime import resolve_device

Step = Callable[[], object]


def time_call(step: Step, device: torch.device) -> float:
    """Seconds of one call (CUDA-synchronised)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def race(steps: dict[str, Step], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each step; one warm-up each, then alternating repeats."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(time_call(step, device))
    return {name: statistics.median(values) for name, values in times.items()}


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) images on 8-bit levels: low-frequency colour fields plus noise."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=gen)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic")
    x = x + 0.05 * torch.randn(n, 3, size, size, generator=gen)
    return x.clamp(0, 1).mul(255).round().div(255)


@contextlib.contextmanager
def _offline_inception_weights() -> Iterator[None]:
    """Build torch-fidelity's Inception with untrained weights (no download)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with (
        mock.patch.object(tfi, "load_state_dict_from_url", return_value={}),
        mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", return_value=None),
    ):
        yield


def build_torchmetrics_fid(device: torch.device) -> tuple[object | None, str]:
    """torchmetrics' FID metric, and how its weights were obtained (or why it is missing)."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as exc:
        return None, f"torchmetrics FID unavailable ({exc})"
    try:
        metric = FrechetInceptionDistance(feature=2048, normalize=True)
        return metric.to(device), "pretrained torch-fidelity weights"
    except ModuleNotFoundError as exc:
        return None, f"skipped: {exc}"
    except Exception as exc:  # noqa: BLE001 - any download failure: fall back to random weights
        reason = f"{type(exc).__name__}".strip()
    with _offline_inception_weights():
        metric = FrechetInceptionDistance(feature=2048, normalize=True)
    return metric.to(device), f"UNTRAINED weights (download failed: {reason}); speed only"


def bench_fid(x: torch.Tensor, repeats: int, device: torch.device) -> None:
    ours = load_fid_inception(device)
    stats = FeatureStats(2048, device=device)
    metric, how = build_torchmetrics_fid(device)
    n = x.shape[0]
    print(f"\n== FID feature pass: {n} images {x.shape[-1]}px -> 299px, {device} ==")
    print(f"torchmetrics FrechetInceptionDistance: {how}")
    if metric is None:
        return
    x_u8 = x.mul(255).round().to(torch.uint8)

    @torch.no_grad()
    def ours_update() -> None:
        stats.update(ours(x))

    @torch.no_grad()
    def ours_net() -> torch.Tensor:
        return ours(x)

    @torch.no_grad()
    def tm_net() -> object:
        return metric.inception(x_u8)

    steps = {
        "vqrae update": ours_update,
        "torchmetrics update": lambda: metric.update(x, real=True),
        "vqrae network": ours_net,
        "torchmetrics network": tm_net,
    }
    report(race(steps, repeats, device), n, [("update", "update"), ("network", "network")])


def bench_ssim(x: torch.Tensor, y: torch.Tensor, repeats: int, device: torch.device) -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    n = x.shape[0]
    print(f"\n== SSIM: {n} image pairs of {x.shape[-1]}px, {device} ==")
    kwargs = {"gaussian_kernel": True, "kernel_size": 11, "sigma": 1.5, "data_range": 1.0}
    metric = StructuralSimilarityIndexMeasure(**kwargs).to(device)

    def tm_step() -> torch.Tensor:
        metric.update(y, x)
        value = metric.compute()
        metric.reset()
        return value

    steps = {
        "vqrae float64": lambda: ssim(x, y),
        "vqrae float32": lambda: ssim(x, y, dtype=torch.float32),
        "torchmetrics": tm_step,
    }
    timings = race(steps, repeats, device)
    report(timings, n, [("float64", ""), ("float32", "")], baseline="torchmetrics")
    ours = ssim(x, y).cpu()
    ours32 = ssim(x, y, dtype=torch.float32).cpu()
    theirs, full_map = structural_similarity_index_measure(
        y, x, reduction="none", return_full_image=True, **kwargs
    )
    pad = 5  # (11 - 1) // 2
    valid = full_map[..., pad:-pad, pad:-pad].flatten(1).mean(1).double().cpu()
    theirs = theirs.double().cpu()
    print(
        f"mean SSIM: vqrae {ours.mean().item():.6f}, torchmetrics {theirs.mean().item():.6f}\n"
        f"  max per-image |vqrae - torchmetrics as reported (full map incl. reflected border)| "
        f"= {(ours - theirs).abs().max().item():.2e}\n"
        f"  max per-image |vqrae float64 - torchmetrics map cropped to the valid region| = "
        f"{(ours - valid).abs().max().item():.2e} (vqrae float32: "
        f"{(ours32 - valid).abs().max().item():.2e})"
    )


def report(
    timings: dict[str, float],
    n: int,
    pairs: list[tuple[str, str]],
    baseline: str | None = None,
) -> None:
    """Print images/second per step and vqrae / torchmetrics speed ratios."""
    for name, seconds in timings.items():
        print(f"  {name:24s} {seconds * 1e3:9.1f} ms/call  {n / seconds:9.1f} images/s")
    for ours_key, theirs_key in pairs:
        ours = timings[f"vqrae {ours_key}"]
        theirs = timings[baseline or f"torchmetrics {theirs_key}"]
        label = baseline or f"torchmetrics {theirs_key}"
        print(f"  speed ratio vqrae {ours_key} / {label}: {theirs / ours:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="images per call")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per step")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--skip-fid", action="store_true", help="only benchmark SSIM")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    x = smooth_images(args.batch, args.size, seed=0).to(device)
    y = (x + 0.04 * torch.randn_like(x)).clamp(0, 1).mul(255).round().div(255)  # "recons"
    bench_ssim(x, y, args.repeats, device)
    if not args.skip_fid:
        bench_fid(x, args.repeats, device)


if __name__ == "__main__":
    main()
