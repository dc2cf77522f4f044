"""Fréchet Inception Distance from features, with a streaming float64 statistics accumulator.

The Inception network lives in :mod:`vqrae.eval.inception`; everything here works on its 2048-d
pool features (or any other features), so it can be tested without weights.

``FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``

The matrix square root is ``scipy.linalg.sqrtm`` of ``S1 @ S2`` in float64, as in pytorch-fid and
clean-fid, so numbers are comparable with theirs: when the result is not finite (a near-singular
product) ``eps * I`` is added to both covariances and the root is recomputed; a complex result is
accepted only when the imaginary part of its diagonal is negligible (``atol=1e-3``) and is then
discarded, otherwise ``ValueError`` is raised.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.distributed as dist

ArrayLike = np.ndarray | torch.Tensor

__all__ = [
    "FeatureStats",
    "fid_from_features",
    "fid_from_stats",
    "frechet_distance",
    "load_stats",
    "save_stats",
]


def _as_float64_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def frechet_distance(
    mu1: ArrayLike,
    sigma1: ArrayLike,
    mu2: ArrayLike,
    sigma2: ArrayLike,
    eps: float = 1e-6,
) -> float:
    """Fréchet distance between the Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Computed in float64 with ``scipy.linalg.sqrtm`` (see the module docstring for the
    near-singular fallback and the imaginary-part check).

    Args:
        mu1: Mean ``(D,)`` of the first set (e.g. generated or reconstructed images).
        sigma1: Covariance ``(D, D)`` of the first set.
        mu2: Mean ``(D,)`` of the second (reference) set.
        sigma2: Covariance ``(D, D)`` of the second set.
        eps: Diagonal offset used only when the plain square root is not finite.

    Returns:
        The distance, a non-negative float (up to rounding).

    Raises:
        ValueError: On shape mismatches or a square root with a significant imaginary part.
    """
    mu1_, mu2_ = np.atleast_1d(_as_float64_numpy(mu1)), np.atleast_1d(_as_float64_numpy(mu2))
    s1, s2 = np.atleast_2d(_as_float64_numpy(sigma1)), np.atleast_2d(_as_float64_numpy(sigma2))
    d = mu1_.shape[0]
    if mu1_.shape != (d,) or mu2_.shape != (d,):
        raise ValueError(f"means must both be (D,), got {mu1_.shape} and {mu2_.shape}")
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must both be ({d}, {d}), got {s1.shape} and {s2.shape}")
    diff = mu1_ - mu2_
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            worst = float(np.max(np.abs(covmean.imag)))
            raise ValueError(f"matrix square root has a large imaginary component ({worst:.3g})")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


class FeatureStats:
    """Streaming mean and covariance of feature vectors, in float64.

    Keeps the count, the running sum and the running sum of outer products, so memory is
    ``O(D^2)`` whatever the number of images, chunks can be merged in any order, and the
    per-rank state can be summed across processes with one ``all_reduce``.

    Example::

        stats = FeatureStats(2048)
        for images in loader:
            stats.update(inception(images))
        mu, sigma = stats.all_reduced().mean(), stats.all_reduced().cov()
    """

    def __init__(self, dim: int, device: torch.device | str | None = None) -> None:
        """Create empty statistics.

        Args:
            dim: Feature dimension ``D``.
            device: Where the float64 accumulators live. Use the CUDA device under NCCL so
                :meth:`all_reduced` can reduce in place; CPU works with gloo and single process.
        """
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.count = 0
        self.sum = torch.zeros(dim, dtype=torch.float64, device=self.device)
        self.sum_outer = torch.zeros(dim, dim, dtype=torch.float64, device=self.device)

    def update(self, features: ArrayLike) -> None:
        """Add a chunk of features ``(N, D)`` (numpy or torch, any float dtype or device)."""
        if isinstance(features, np.ndarray):
            features = torch.from_numpy(features)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features (N, {self.dim}), got {tuple(features.shape)}")
        f = features.detach().to(self.device, torch.float64)  # (N, D)
        self.count += f.shape[0]
        self.sum += f.sum(dim=0)
        self.sum_outer += f.T @ f

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add another accumulator's statistics into this one (in place); returns ``self``."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dim {other.dim} into dim {self.dim}")
        self.count += other.count
        self.sum += other.sum.to(self.device)
        self.sum_outer += other.sum_outer.to(self.device)
        return self

    def all_reduced(self) -> FeatureStats:
        """Return a copy summed over all ranks of the default process group.

        Without an initialised ``torch.distributed`` process group this is a plain copy, so the
        same code runs on one process or many. ``self`` is not modified (safe to call twice).
        """
        flat = torch.cat(
            [
                torch.tensor([float(self.count)], dtype=torch.float64, device=self.device),
                self.sum,
                self.sum_outer.flatten(),
            ]
        )
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        out = FeatureStats(self.dim, self.device)
        out.count = int(round(flat[0].item()))
        out.sum = flat[1 : 1 + self.dim].clone()
        out.sum_outer = flat[1 + self.dim :].view(self.dim, self.dim).clone()
        return out

    def mean(self) -> np.ndarray:
        """Mean ``(D,)`` in float64."""
        if self.count < 1:
            raise ValueError("no features accumulated")
        return (self.sum / self.count).cpu().numpy()

    def cov(self) -> np.ndarray:
        """Unbiased covariance ``(D, D)`` in float64, like ``np.cov(features, rowvar=False)``."""
        if self.count < 2:
            raise ValueError(f"covariance needs at least 2 features, got {self.count}")
        mu = self.sum / self.count
        c = (self.sum_outer - self.count * torch.outer(mu, mu)) / (self.count - 1)
        c = 0.5 * (c + c.T)  # exact symmetry despite rounding
        return c.cpu().numpy()


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two accumulators (call :meth:`FeatureStats.all_reduced` first if distributed)."""
    return frechet_distance(a.mean(), a.cov(), b.mean(), b.cov())


def fid_from_features(f1: ArrayLike, f2: ArrayLike) -> float:
    """FID between two feature sets ``(N1, D)`` and ``(N2, D)`` (numpy or torch).

    Means and unbiased covariances are computed in float64, as pytorch-fid does.
    """
    a = _as_float64_numpy(f1)
    b = _as_float64_numpy(f2)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected features (N1, D) and (N2, D), got {a.shape} and {b.shape}")
    return frechet_distance(
        a.mean(axis=0), np.cov(a, rowvar=False), b.mean(axis=0), np.cov(b, rowvar=False)
    )


def save_stats(path: str | os.PathLike[str], mu: np.ndarray, sigma: np.ndarray) -> None:
    """Write reference statistics as ``.npz`` with keys ``mu`` and ``sigma`` (pytorch-fid's format).

    The file is written to a temporary name and moved into place atomically.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_stats(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(mu, sigma)`` from an ``.npz`` file with keys ``mu`` and ``sigma``."""
    with np.load(path) as data:
        if "mu" not in data or "sigma" not in data:
            raise ValueError(f"{path}: expected arrays 'mu' and 'sigma', found {list(data.keys())}")
        return data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
