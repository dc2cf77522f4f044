"""Semantic-retention metrics for encoder features.

These measure how much of a vision foundation model's semantics a tokenizer's encoder keeps
(e.g. after stage-2 self-distillation, or through the quantizer):

* :func:`feature_cosine_similarity`: token-wise agreement between two encoders' features.
* :func:`knn_accuracy`: leave-one-out k-NN classification on L2-normalised features.
* :func:`kmeans` + :func:`cluster_purity`: unsupervised clustering quality.
* :func:`labels_from_filenames`: class labels from ImageNet-style names
  (``n02085620_Chihuahua.JPEG``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = np.ndarray | torch.Tensor | Sequence[int]

__all__ = [
    "KMeansResult",
    "cluster_purity",
    "feature_cosine_similarity",
    "kmeans",
    "knn_accuracy",
    "knn_predict",
    "labels_from_filenames",
]


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _as_labels(labels: ArrayLike, n: int, device: torch.device) -> torch.Tensor:
    t = _as_tensor(labels).to(device)
    if t.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(t.shape)}")
    if t.is_floating_point():
        raise TypeError(f"labels must be integers, got {t.dtype}")
    return t.long()


def feature_cosine_similarity(
    a: torch.Tensor, b: torch.Tensor, per_image: bool = False
) -> float | torch.Tensor:
    """Mean cosine similarity between corresponding feature vectors of two encoders.

    Args:
        a: Features ``(B, N, D)`` (or ``(B, D)``, one vector per image).
        b: Features of the same shape, e.g. from the teacher encoder.
        per_image: Return the per-image mean over tokens ``(B,)`` (float64, for streaming
            averages over a data set) instead of the overall mean.

    Returns:
        The mean over tokens and images as a float, or a ``(B,)`` tensor if ``per_image``.
    """
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise ValueError(
            f"expected two (B, N, D) or (B, D) tensors of one shape, got {a.shape}, {b.shape}"
        )
    cos = F.cosine_similarity(a.detach().double(), b.detach().double(), dim=-1, eps=1e-12)
    if cos.ndim == 1:
        cos = cos[:, None]  # (B, 1)
    per = cos.mean(dim=1)  # (B,)
    return per if per_image else float(per.mean().item())


def knn_predict(
    queries: torch.Tensor,
    database: torch.Tensor,
    database_labels: ArrayLike,
    k: int = 1,
    temperature: float | None = None,
    exclude_self: bool = False,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Classify queries by their k nearest database entries under cosine similarity.

    Features are L2-normalised first. Each of the k neighbours votes for its label with weight 1
    (``temperature=None``; ties go to the tied class with the larger summed similarity, so k=1
    is plain nearest-neighbour) or ``exp(similarity / temperature)`` (DINO's weighted k-NN uses
    k=20, temperature 0.07). Queries are processed ``chunk_size`` at a time, so memory is
    ``O(chunk_size * M)``.

    Args:
        queries: ``(Q, D)`` features.
        database: ``(M, D)`` features.
        database_labels: ``(M,)`` integer labels (any values).
        k: Number of neighbours.
        temperature: Softmax temperature for weighted voting, or ``None`` for majority vote.
        exclude_self: Query i is database entry i (requires Q == M): exclude it from its own
            neighbours (leave-one-out). Only the same index is excluded, not exact duplicates.
        chunk_size: Queries per similarity block.

    Returns:
        ``(Q,)`` int64 predicted labels (values taken from ``database_labels``).
    """
    q = _as_tensor(queries)
    db = _as_tensor(database).to(q.device)
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise ValueError(
            f"expected (Q, D) and (M, D) features, got {tuple(q.shape)}, {tuple(db.shape)}"
        )
    m = db.shape[0]
    labels = _as_labels(database_labels, m, q.device)
    classes, label_idx = torch.unique(labels, return_inverse=True)
    n_classes = classes.numel()
    available = m - 1 if exclude_self else m
    if not 1 <= k <= available:
        raise ValueError(f"k must be in [1, {available}], got {k}")
    if exclude_self and q.shape[0] != m:
        raise ValueError(f"exclude_self needs queries == database, got {q.shape[0]} vs {m}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dtype = torch.promote_types(q.dtype, torch.float32)
    qn = F.normalize(q.to(dtype), dim=1)
    dbn = F.normalize(db.to(dtype), dim=1)
    preds = []
    for start in range(0, qn.shape[0], chunk_size):
        sims = qn[start : start + chunk_size] @ dbn.T  # (C, M)
        rows = torch.arange(sims.shape[0], device=sims.device)
        if exclude_self:
            sims[rows, rows + start] = -torch.inf
        top_sim, top_idx = sims.topk(k, dim=1)  # (C, k)
        top_lab = label_idx[top_idx]  # (C, k)
        top_sim = top_sim.double()
        if temperature is None:
            # Majority vote; the summed similarity (in [-k, k]) only breaks ties.
            weights = torch.full_like(top_sim, 2.0 * k + 1.0) + top_sim
        else:
            weights = torch.exp(top_sim / temperature)
        votes = torch.zeros(sims.shape[0], n_classes, dtype=torch.float64, device=sims.device)
        votes.scatter_add_(1, top_lab, weights)
        preds.append(classes[votes.argmax(dim=1)])
    return torch.cat(preds)


def knn_accuracy(
    features: torch.Tensor,
    labels: ArrayLike,
    k: int = 1,
    leave_one_out: bool = True,
    temperature: float | None = None,
    chunk_size: int = 1024,
) -> float:
    """Leave-one-out k-NN classification accuracy of a labelled feature set.

    Every sample is classified by its k nearest *other* samples (cosine similarity on
    L2-normalised features; see :func:`knn_predict` for voting). The default, k=1, is top-1
    nearest-neighbour accuracy.

    Args:
        features: ``(M, D)`` features, e.g. mean-pooled encoder tokens.
        labels: ``(M,)`` integer labels.
        k: Number of neighbours.
        leave_one_out: Exclude each sample from its own neighbours (the diagonal). Setting it
            to False makes every sample its own nearest neighbour: only for sanity checks.
        temperature: ``None`` for majority vote, or a temperature for DINO-style weighting.
        chunk_size: Queries per similarity block (memory ``O(chunk_size * M)``).

    Returns:
        Accuracy in ``[0, 1]``.
    """
    f = _as_tensor(features)
    if f.ndim != 2:
        raise ValueError(f"features must be (M, D), got {tuple(f.shape)}")
    y = _as_labels(labels, f.shape[0], f.device)
    pred = knn_predict(
        f, f, y, k=k, temperature=temperature, exclude_self=leave_one_out, chunk_size=chunk_size
    )
    return float((pred == y).double().mean().item())


@dataclass(frozen=True)
class KMeansResult:
    """Output of :func:`kmeans`.

    Attributes:
        assignments: ``(M,)`` int64 cluster index of every point.
        centroids: ``(k, D)`` cluster centres.
        inertia: Sum of squared distances of points to their centres.
        iterations: Lloyd iterations run.
        converged: Whether the assignments stopped changing before ``iters`` ran out.
    """

    assignments: torch.Tensor
    centroids: torch.Tensor
    inertia: float
    iterations: int
    converged: bool


def _sq_dists(x: torch.Tensor, c: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Min squared distance ``(M,)`` and argmin ``(M,)`` of each row of x to the rows of c."""
    c_sq = (c * c).sum(1)
    mins, args = [], []
    for s in range(0, x.shape[0], chunk):
        xs = x[s : s + chunk]
        d = (xs * xs).sum(1, keepdim=True) - 2.0 * xs @ c.T + c_sq  # (C, k)
        v, i = d.min(dim=1)
        mins.append(v.clamp_min(0))
        args.append(i)
    return torch.cat(mins), torch.cat(args)


def kmeans(
    features: torch.Tensor,
    k: int,
    seed: int = 0,
    iters: int = 100,
    chunk_size: int = 4096,
) -> KMeansResult:
    """Lloyd's k-means with k-means++ initialisation, deterministic for a given seed.

    Random draws use a CPU ``torch.Generator`` seeded with ``seed``, so results do not depend on
    the global RNG. A cluster that becomes empty is re-seeded with the point farthest from its
    centre. Computation is in at least float32 on the features' device; for spherical k-means
    L2-normalise the features first.

    Args:
        features: ``(M, D)`` points.
        k: Number of clusters, ``1 <= k <= M``.
        seed: Seed of the initialisation.
        iters: Maximum number of Lloyd iterations.
        chunk_size: Points per distance block.

    Returns:
        A :class:`KMeansResult`.
    """
    x = _as_tensor(features)
    if x.ndim != 2:
        raise ValueError(f"features must be (M, D), got {tuple(x.shape)}")
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    m = x.shape[0]
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, {m}], got {k}")
    gen = torch.Generator().manual_seed(seed)

    # k-means++: first centre uniform, then proportional to the squared distance.
    centre_idx = [int(torch.randint(m, (1,), generator=gen).item())]
    d2, _ = _sq_dists(x, x[centre_idx], chunk_size)
    for _ in range(1, k):
        w = d2.double().cpu()
        if w.sum() <= 0:  # fewer distinct points than k: take any unused point
            w = torch.ones(m, dtype=torch.float64)
            w[centre_idx] = 0
        nxt = int(torch.multinomial(w, 1, generator=gen).item())
        centre_idx.append(nxt)
        d2 = torch.minimum(d2, _sq_dists(x, x[nxt : nxt + 1], chunk_size)[0])
    centroids = x[centre_idx].clone()  # (k, D)

    assign = torch.full((m,), -1, dtype=torch.long, device=x.device)
    converged = False
    iterations = 0
    while iterations < iters:
        iterations += 1
        d2, new_assign = _sq_dists(x, centroids, chunk_size)
        if torch.equal(new_assign, assign):
            converged = True
            break
        assign = new_assign
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        empty = (counts == 0).nonzero().flatten().tolist()
        centroids = sums / counts.clamp_min(1)[:, None].to(x.dtype)
        if empty:
            far = d2.argsort(descending=True)[: len(empty)]
            centroids[empty] = x[far]
    d2, assign = _sq_dists(x, centroids, chunk_size)
    return KMeansResult(assign, centroids, float(d2.double().sum().item()), iterations, converged)


def cluster_purity(assignments: ArrayLike, labels: ArrayLike) -> float:
    """Purity of a clustering: each cluster is credited with its most frequent label.

    ``purity = (1 / M) * sum_c max_l |{i : a_i = c, y_i = l}|``, in ``(0, 1]``; 1 means every
    cluster holds a single label (trivially so with one cluster per point: compare clusterings
    with the same k).
    """
    a = _as_tensor(assignments).reshape(-1)
    y = _as_labels(labels, a.numel(), a.device)
    if a.is_floating_point():
        raise TypeError(f"assignments must be integers, got {a.dtype}")
    if a.numel() == 0:
        raise ValueError("cluster_purity of an empty set is undefined")
    _, ai = torch.unique(a, return_inverse=True)
    _, yi = torch.unique(y, return_inverse=True)
    n_a, n_y = int(ai.max()) + 1, int(yi.max()) + 1
    table = torch.bincount(ai * n_y + yi, minlength=n_a * n_y).view(n_a, n_y)  # contingency
    return float(table.max(dim=1).values.sum().item()) / a.numel()


def labels_from_filenames(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[torch.Tensor, list[str]]:
    """Integer labels from ImageNet-style file names ``<synset>_<anything>.<ext>``.

    The synset is the part of the file name before the first underscore
    (``n02085620_Chihuahua.JPEG`` -> ``n02085620``). Labels index the sorted unique synsets, so
    the 1000 ImageNet synsets map to the standard class indices.

    Args:
        paths: File paths or names.

    Returns:
        ``(labels, synsets)``: an int64 tensor ``(len(paths),)`` and the sorted synset list.
    """
    names = []
    for p in paths:
        name = Path(p).name
        synset, sep, rest = name.partition("_")
        if not sep or not synset or not rest:
            raise ValueError(
                f"cannot read a synset from {name!r}: expected '<synset>_<name>.<ext>'"
            )
        names.append(synset)
    synsets = sorted(set(names))
    index = {s: i for i, s in enumerate(synsets)}
    return torch.tensor([index[s] for s in names], dtype=torch.long), synsets
