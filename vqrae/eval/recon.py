"""Reconstruction evaluation of a tokenizer over a data set, streamed with flat memory.

Protocol (the paper's, at any resolution): every image is centre-cropped and resized to
``size`` x ``size`` (ADM: :func:`vqrae.data.images.center_crop_resize`), passed once through the
model (``model(images)``: the same forward pass gives the reconstruction and the code indices),
and the reconstruction is rounded to 8-bit levels, ``floor(255 x + 0.5)``, exactly as a saved PNG
would hold it. Against the cropped original it then scores:

* PSNR (dB, 0-255 scale) and SSIM (Gaussian window, sigma 1.5, data range of the 8-bit scale:
  the same as data_range=1 on [0, 1] images) per image (:mod:`vqrae.eval.metrics`), averaged
  over images. Identical images have infinite PSNR: per-image PSNR is capped at
  :data:`PSNR_CAP_DB` (100 dB) so means stay finite and JSON stays valid; ``num_psnr_capped``
  counts the capped images. (The largest finite 8-bit PSNR is ~88 dB at 56 px and ~101 dB at
  256 px, so the cap only ever touches identical or near-identical images.)
* LPIPS-VGG per image (:func:`vqrae.eval.perceptual.load_lpips`), averaged.
* rFID: Fréchet distance between Inception pool features of the reconstructions and of the same
  cropped originals (:func:`vqrae.eval.inception.load_fid_inception`). Needs at least 2 images
  (else ``null`` with a note); below 2048 images the covariances are rank-deficient and FID is
  strongly biased upwards, so small-sample values only compare runs on the same images.
* Codebook usage and perplexity of the code indices (:class:`vqrae.eval.codebook.CodeHistogram`).

Memory does not grow with the data set beyond the per-image score records: one batch of images,
two ``FeatureStats`` (2048 x 2048 float64 each), the histogram, and the examples kept for the
report (the first ``keep_examples`` images and the ``keep_examples`` worst by PSNR, a bounded
heap). While at most 2048 images have been seen, their Inception features are also kept (at most
2048 x 2048 floats per side) so rFID is computed exactly and fast through the nuclear norm
(:func:`frechet_distance_low_rank`); beyond that, from the streaming statistics
(:func:`vqrae.eval.fid.fid_from_stats`, ``scipy.linalg.sqrtm``).
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vqrae.data.images import to_uint8
from vqrae.data.sources import ImageSource, SourceRecord, iter_batches
from vqrae.eval.codebook import CodeHistogram
from vqrae.eval.fid import FeatureStats, fid_from_stats
from vqrae.eval.metrics import psnr, ssim
from vqrae.utils.files import atomic_write
from vqrae.utils.runtime import autocast, default_precision

__all__ = [
    "PSNR_CAP_DB",
    "RFID_MIN_IMAGES",
    "RFID_RELIABLE_IMAGES",
    "Example",
    "ImageScore",
    "ReconResult",
    "evaluate_reconstruction",
    "frechet_distance_low_rank",
    "json_safe",
    "resolve_size",
    "write_metrics",
    "write_per_image_csv",
]

PSNR_CAP_DB = 100.0
RFID_MIN_IMAGES = 2
RFID_RELIABLE_IMAGES = 2048  # the Inception feature dimension: below it, covariances are singular
INCEPTION_DIM = 2048


@dataclass(frozen=True)
class ImageScore:
    """Metrics of one image; ``index`` is its position in the source."""

    index: int
    name: str
    label: str | None
    psnr: float
    ssim: float
    lpips: float


@dataclass
class Example:
    """A scored image kept for the report: original and reconstruction, (H, W, 3) uint8."""

    score: ImageScore
    original: np.ndarray
    reconstruction: np.ndarray


@dataclass
class ReconResult:
    """Everything an evaluation produced.

    Attributes:
        metrics: the JSON-ready summary (see :func:`evaluate_reconstruction`).
        scores: per-image scores in source order.
        failures: ``(name, reason)`` of the items that could not be read.
        first: the first examples, in source order.
        worst: the worst examples by PSNR, worst first.
        code_counts: (K,) int64 histogram of code indices.
    """

    metrics: dict[str, Any]
    scores: list[ImageScore]
    failures: list[tuple[str, str]]
    first: list[Example] = field(default_factory=list)
    worst: list[Example] = field(default_factory=list)
    code_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


# ---------------------------------------------------------------------------- helpers
def json_safe(value: Any) -> Any:
    """Replace non-finite floats (NaN, inf) by ``None``, recursively, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def frechet_distance_low_rank(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Fréchet distance of the Gaussians fitted to feature sets ``a`` (Na, D), ``b`` (Nb, D).

    With ``A = (a - mean) / sqrt(Na - 1)`` the covariance is ``A^T A``, and the non-zero
    eigenvalues of ``S_a S_b = A^T A B^T B`` are those of ``(A B^T)(A B^T)^T``, so
    ``tr sqrt(S_a S_b)`` is the nuclear norm of the small ``Na x Nb`` matrix ``A B^T``. This is
    the same quantity as :func:`vqrae.eval.fid.frechet_distance` (unbiased covariances), without
    a ``D x D`` matrix square root: exact and fast while ``Na, Nb`` are small, where ``sqrtm`` of
    a singular product is both slow and inaccurate. Rounding below zero is clipped to 0.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected features (Na, D) and (Nb, D), got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("the Fréchet distance needs at least 2 samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca = (a - mu_a) / math.sqrt(len(a) - 1)  # (Na, D)
    cb = (b - mu_b) / math.sqrt(len(b) - 1)  # (Nb, D)
    nuclear = np.linalg.svd(ca @ cb.T, compute_uv=False).sum()
    value = ((mu_a - mu_b) ** 2).sum() + (ca * ca).sum() + (cb * cb).sum() - 2.0 * nuclear
    return max(float(value), 0.0)


class _FIDAccumulator:
    """Streaming Inception statistics of originals and reconstructions for rFID."""

    def __init__(self, dim: int = INCEPTION_DIM, keep_up_to: int = RFID_RELIABLE_IMAGES) -> None:
        self.real, self.fake = FeatureStats(dim), FeatureStats(dim)
        self.keep_up_to = keep_up_to
        self.kept: tuple[list[np.ndarray], list[np.ndarray]] | None = ([], [])

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        self.real.update(real)
        self.fake.update(fake)
        if self.kept is not None:
            if self.real.count > self.keep_up_to:
                self.kept = None  # enough samples: the D x D statistics take over
            else:
                self.kept[0].append(real.detach().double().cpu().numpy())
                self.kept[1].append(fake.detach().double().cpu().numpy())

    def compute(self) -> tuple[float | None, str | None]:
        """(rFID, note); rFID is None when it cannot be computed."""
        n = self.real.count
        if n < RFID_MIN_IMAGES:
            return None, f"rFID needs at least {RFID_MIN_IMAGES} images, got {n}"
        note = None
        if n < RFID_RELIABLE_IMAGES:
            note = (
                f"rFID on {n} < {RFID_RELIABLE_IMAGES} images: covariances are rank-deficient "
                "and the value is biased upwards; compare only runs on the same images"
            )
        try:
            if self.kept is not None:
                value = frechet_distance_low_rank(
                    np.concatenate(self.kept[1]), np.concatenate(self.kept[0])
                )
            else:
                value = fid_from_stats(self.fake, self.real)
        except ValueError as exc:
            return None, f"rFID could not be computed: {exc}"
        return value, note


class _WorstExamples:
    """The ``n`` examples with the lowest PSNR (ties: the earlier image wins), bounded heap."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._heap: list[tuple[float, int, Example]] = []

    def offer(self, example: Example) -> None:
        if self.n <= 0:
            return
        item = (-example.score.psnr, -example.score.index, example)
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def sorted(self) -> list[Example]:
        return [e for _, _, e in sorted(self._heap, key=lambda t: (-t[0], -t[1]))]


def resolve_size(model: nn.Module, size: int | None) -> int:
    """``size``, or the model's own image size when ``None``; checked against the patch size.

    Raises:
        ValueError: naming the nearest valid sizes when ``size`` is not a multiple of the patch.
    """
    resolved = size or model.config.image_size
    patch = getattr(model, "size_multiple", None) or getattr(model, "patch_size", 1)
    if resolved < 1:
        raise ValueError(f"size must be positive, got {resolved}")
    if resolved % patch:
        lower = max(patch, resolved // patch * patch)
        upper = (resolved // patch + 1) * patch
        raise ValueError(
            f"size {resolved} is not a multiple of the model's {patch} px; "
            f"nearest valid sizes: {lower} or {upper}"
        )
    return resolved


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _Timer:
    """Accumulated seconds per phase."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, start: float, device: torch.device) -> float:
        _sync(device)
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - start
        return now


# ---------------------------------------------------------------------------- evaluation
def evaluate_reconstruction(
    model: nn.Module,
    source: ImageSource | Iterable[SourceRecord],
    size: int | None = None,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    max_images: int | None = None,
    keep_examples: int = 16,
    progress: bool = True,
    inception: nn.Module | None = None,
    lpips: nn.Module | None = None,
    model_name: str | None = None,
    on_failure: Callable[[SourceRecord], None] | None = None,
) -> ReconResult:
    """Evaluate reconstruction quality over a source (see the module docstring for the protocol).

    Args:
        model: a :class:`vqrae.tokenizer.model.VQRAE` (anything whose ``model(images)`` returns
            ``.recon`` in [0, 1] and ``.indices``, with ``config.codebook_size``).
        source: an :class:`ImageSource` or any iterable of :class:`SourceRecord`.
        size: evaluation resolution (default: ``model.config.image_size``); must be divisible
            by the model's patch size.
        batch_size: images per forward pass.
        device: where to run (default: where the model is; the model is moved if needed).
        max_images: evaluate only the first N items of the source (unreadable ones count).
        keep_examples: how many first and worst examples to keep for the report.
        progress: show a progress bar.
        inception: a preloaded FID Inception (default: :func:`load_fid_inception`).
        lpips: a preloaded LPIPS (default: :func:`load_lpips`).
        model_name: how to name the model in the metrics (default: its encoder).
        on_failure: called with each unreadable record as it is met.

    Returns:
        A :class:`ReconResult`; ``metrics`` holds ``psnr``, ``ssim``, ``lpips``, ``rfid``,
        ``codebook_usage``, ``codebook_perplexity``, ``num_images``, ``num_failed``,
        ``image_size``, ``model``, ``timing`` and more (means over readable images; ``None``
        where undefined).
    """
    start_total = time.perf_counter()
    target = torch.device(device) if device is not None else _model_device(model)
    model = model.to(target).eval()
    size = resolve_size(model, size)
    precision = default_precision(target)
    records = source.take(max_images) if isinstance(source, ImageSource) else source
    total = len(source) if isinstance(source, ImageSource) else None
    if total is not None and max_images is not None:
        total = min(total, max_images)

    fid = _FIDAccumulator()
    hist = CodeHistogram(model.config.codebook_size, device=target)
    scores: list[ImageScore] = []
    failures: list[tuple[str, str]] = []
    first: list[Example] = []
    worst = _WorstExamples(keep_examples)
    timer = _Timer()
    tokens_per_image = 0
    bar = tqdm(total=total, desc="eval-recon", unit="img", disable=not progress or None)
    tick = time.perf_counter()
    for batch in iter_batches(records, batch_size, size):
        tick = timer.add("data", tick, target)
        for record in batch.failures:
            failures.append((record.name, record.error or "unreadable"))
            if on_failure is not None:
                on_failure(record)
        if len(batch):
            x = batch.pixels.to(target)  # (B, 3, S, S), exact 8-bit levels
            with torch.no_grad(), autocast(target, precision):
                out = model(x, clamp=True)
            recon_u8 = to_uint8(out.recon)  # (B, 3, S, S) uint8, as saved
            hist.update(out.indices)
            tokens_per_image = out.indices[0].numel()
            tick = timer.add("model", tick, target)
            if inception is None or lpips is None:  # loaded only once an image was read
                inception, lpips = _metric_networks(target, inception, lpips)
                tick = timer.add("metric_setup", tick, target)
            orig_u8 = to_uint8(x)
            batch_scores = _score_batch(batch, orig_u8, recon_u8, lpips, inception, fid)
            tick = timer.add("metrics", tick, target)
            for i, score in enumerate(batch_scores):
                scores.append(score)
                example = Example(score, _hwc(orig_u8[i]), _hwc(recon_u8[i]))
                if len(first) < keep_examples:
                    first.append(example)
                worst.offer(example)
        bar.update(len(batch) + len(batch.failures))
    bar.close()

    counts = hist.global_counts().cpu().numpy()
    rfid, rfid_note = fid.compute()
    timer.add("rfid", tick, target)
    metrics = _summary(scores, failures, counts, rfid, rfid_note, tokens_per_image)
    total_s = time.perf_counter() - start_total
    metrics.update(
        model=model_name or getattr(model.config, "encoder", type(model).__name__),
        data=getattr(source, "description", None) or None,
        image_size=size,
        batch_size=batch_size,
        device=str(target),
        precision=precision,
        timing={
            "total_s": round(total_s, 3),
            **{f"{k}_s": round(v, 3) for k, v in timer.seconds.items()},
            "images_per_s": round(len(scores) / total_s, 3) if total_s > 0 else None,
        },
        failures=[{"name": n, "error": e} for n, e in failures],
    )
    return ReconResult(metrics, scores, failures, first, worst.sorted(), counts)


def _metric_networks(
    device: torch.device, inception: nn.Module | None, lpips: nn.Module | None
) -> tuple[nn.Module, nn.Module]:
    """The FID Inception and LPIPS networks, loading whichever was not given."""
    if inception is None:
        from vqrae.eval.inception import load_fid_inception

        inception = load_fid_inception(device)
    if lpips is None:
        from vqrae.eval.perceptual import load_lpips

        lpips = load_lpips(device)
    return inception, lpips


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).cpu().numpy()  # (H, W, 3) uint8


def _score_batch(
    batch: Any,
    orig_u8: torch.Tensor,
    recon_u8: torch.Tensor,
    lpips: nn.Module,
    inception: nn.Module,
    fid: _FIDAccumulator,
) -> list[ImageScore]:
    """Per-image PSNR / SSIM / LPIPS of one batch; adds its Inception features to ``fid``."""
    p = psnr(orig_u8, recon_u8).clamp(max=PSNR_CAP_DB).tolist()
    s = ssim(orig_u8, recon_u8).tolist()
    orig = orig_u8.float() / 255.0
    recon = recon_u8.float() / 255.0
    with torch.no_grad():  # metric networks run in fp32, outside autocast
        lp = lpips(orig, recon).float().tolist()
        real, fake = inception(torch.cat([orig, recon])).chunk(2)  # one pass: (B, 2048) each
        fid.update(real, fake)
    return [
        ImageScore(idx, name, label, float(a), float(b), float(c))
        for idx, name, label, a, b, c in zip(
            batch.indices, batch.names, batch.labels, p, s, lp, strict=True
        )
    ]


def _mean(values: list[float]) -> float | None:
    return float(np.mean(np.asarray(values, np.float64))) if values else None


def _summary(
    scores: list[ImageScore],
    failures: list[tuple[str, str]],
    counts: np.ndarray,
    rfid: float | None,
    rfid_note: str | None,
    tokens_per_image: int,
) -> dict[str, Any]:
    from vqrae.eval.codebook import codebook_perplexity, codebook_usage

    used = counts.sum() > 0
    return {
        "psnr": _mean([s.psnr for s in scores]),
        "ssim": _mean([s.ssim for s in scores]),
        "lpips": _mean([s.lpips for s in scores]),
        "rfid": rfid,
        "rfid_note": rfid_note,
        "codebook_usage": codebook_usage(counts) if used else None,
        "codebook_perplexity": codebook_perplexity(counts) if used else None,
        "codebook_size": int(counts.size),
        "codes_used": int((counts > 0).sum()),
        "tokens_per_image": tokens_per_image,
        "num_images": len(scores),
        "num_failed": len(failures),
        "psnr_cap_db": PSNR_CAP_DB,
        "num_psnr_capped": sum(s.psnr >= PSNR_CAP_DB for s in scores),
        "protocol": (
            "ADM centre crop + resize; reconstructions rounded to 8-bit levels; PSNR (0-255, "
            "capped at 100 dB) and SSIM (Gaussian sigma 1.5, valid region) per image, then "
            "averaged; LPIPS-VGG; rFID: Inception pool3 features of reconstructions vs the "
            "same cropped originals"
        ),
    }


# ---------------------------------------------------------------------------- writing
def write_metrics(result: ReconResult, out_dir: str | Path) -> Path:
    """Write ``metrics.json`` (strict JSON: non-finite values become ``null``), atomically."""
    text = json.dumps(json_safe(result.metrics), indent=2, allow_nan=False) + "\n"
    path = Path(out_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_per_image_csv(result: ReconResult, out_dir: str | Path) -> Path:
    """Write ``per_image.csv`` (index, name, label, psnr, ssim, lpips) in source order."""
    buffer = io.StringIO()
    columns = ["index", "name", "label", "psnr", "ssim", "lpips"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for score in result.scores:
        row = asdict(score)
        row.update({k: f"{row[k]:.6f}" for k in ("psnr", "ssim", "lpips")})
        writer.writerow({k: "" if row[k] is None else row[k] for k in columns})
    path = Path(out_dir) / "per_image.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()))
