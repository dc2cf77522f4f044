"""Codebook statistics: usage (fraction of codes ever selected) and perplexity.

Both are computed from a histogram of code indices over a whole evaluation set. Under
``torch.distributed`` the per-rank histograms must be summed first: :class:`CodeHistogram` does
that itself (:meth:`CodeHistogram.global_counts`), so one script serves one process or many.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist

ArrayLike = np.ndarray | torch.Tensor

__all__ = ["CodeHistogram", "codebook_perplexity", "codebook_usage"]


def _counts_as_tensor(counts: ArrayLike) -> torch.Tensor:
    c = torch.as_tensor(counts).detach().to("cpu", torch.float64)
    if c.ndim != 1 or c.numel() == 0:
        raise ValueError(f"counts must be a non-empty 1-D histogram, got shape {tuple(c.shape)}")
    if (c < 0).any():
        raise ValueError("counts must be non-negative")
    return c


def codebook_usage(counts: ArrayLike) -> float:
    """Fraction of codes used at least once, in ``[0, 1]``.

    Args:
        counts: Histogram ``(K,)`` of how often each of the K codes was selected.
    """
    c = _counts_as_tensor(counts)
    return float((c > 0).sum().item()) / c.numel()


def codebook_perplexity(counts: ArrayLike) -> float:
    """Perplexity ``exp(H(p))`` of the normalised histogram, in nats; ``1 <= ppl <= K``.

    It equals K for perfectly uniform use and 1 when a single code is used. Empty codes
    contribute ``0 log 0 = 0``.

    Args:
        counts: Histogram ``(K,)`` of how often each of the K codes was selected.
    """
    c = _counts_as_tensor(counts)
    total = c.sum()
    if total <= 0:
        raise ValueError("perplexity of an empty histogram is undefined")
    p = c[c > 0] / total
    return math.exp(float(-(p * p.log()).sum().item()))


class CodeHistogram:
    """Accumulates how often each code index is selected.

    Example::

        hist = CodeHistogram(16384, device="cuda")
        for images in loader:
            hist.update(model.encode(images).indices)
        usage, ppl = hist.usage(), hist.perplexity()  # summed over ranks when distributed
    """

    def __init__(self, num_codes: int, device: torch.device | str | None = None) -> None:
        """Create an empty histogram.

        Args:
            num_codes: Codebook size K; indices must lie in ``[0, K)``.
            device: Device of the int64 counts; under NCCL use the rank's CUDA device.
        """
        if num_codes <= 0:
            raise ValueError(f"num_codes must be positive, got {num_codes}")
        self.num_codes = num_codes
        self.counts = torch.zeros(num_codes, dtype=torch.int64, device=device)

    def update(self, indices: ArrayLike) -> None:
        """Count a tensor of code indices of any shape (e.g. ``(B, N)``)."""
        idx = torch.as_tensor(indices).detach()
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            raise TypeError(f"indices must be integers, got {idx.dtype}")
        idx = idx.reshape(-1).to(self.counts.device, torch.int64)
        if idx.numel() == 0:
            return
        lo, hi = int(idx.min().item()), int(idx.max().item())
        if lo < 0 or hi >= self.num_codes:
            raise ValueError(f"indices must lie in [0, {self.num_codes}), got [{lo}, {hi}]")
        self.counts += torch.bincount(idx, minlength=self.num_codes)

    def reset(self) -> None:
        """Zero the counts."""
        self.counts.zero_()

    def global_counts(self) -> torch.Tensor:
        """Counts summed over all ranks (a copy; ``self.counts`` stays the local histogram).

        Without an initialised ``torch.distributed`` process group this is a plain copy.
        """
        out = self.counts.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def usage(self) -> float:
        """Global fraction of codes used at least once (collective call when distributed)."""
        return codebook_usage(self.global_counts())

    def perplexity(self) -> float:
        """Global perplexity of the code distribution (collective call when distributed)."""
        return codebook_perplexity(self.global_counts())
