"""Tests for the semantic-retention metrics on synthetic data with known answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vqrae.eval.semantics import (
    cluster_purity,
    feature_cosine_similarity,
    kmeans,
    knn_accuracy,
    knn_predict,
    labels_from_filenames,
)


def _blobs(
    n_per: int = 30, n_classes: int = 5, dim: int = 16, spread: float = 0.1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_classes, dim, generator=g), dim=1) * 3
    labels = torch.arange(n_classes).repeat_interleave(n_per)
    feats = centres[labels] + spread * torch.randn(labels.numel(), dim, generator=g)
    perm = torch.randperm(labels.numel(), generator=g)
    return feats[perm], labels[perm]


def test_feature_cosine_similarity() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, 8, generator=g)
    assert feature_cosine_similarity(a, 2.5 * a) == pytest.approx(1.0)
    assert feature_cosine_similarity(a, -a) == pytest.approx(-1.0)
    b = a.clone()
    b[0] = -b[0]  # one image of three flipped
    per = feature_cosine_similarity(a, b, per_image=True)
    assert torch.allclose(per, torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    assert feature_cosine_similarity(a, b) == pytest.approx(1 / 3)
    assert feature_cosine_similarity(a[:, 0], a[:, 0]) == pytest.approx(1.0)  # (B, D)
    with pytest.raises(ValueError, match="shape"):
        feature_cosine_similarity(a, a[:, :4])


def test_knn_separable_clusters_are_perfect() -> None:
    feats, labels = _blobs()
    assert knn_accuracy(feats, labels) == 1.0
    assert knn_accuracy(feats, labels + 100, k=20, temperature=0.07, chunk_size=7) == 1.0


def test_knn_leave_one_out_excludes_the_diagonal() -> None:
    # Random labels on random features: with the diagonal, 1-NN is trivially 100%.
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(200, 32, generator=g)
    labels = torch.randint(0, 4, (200,), generator=g)
    assert knn_accuracy(feats, labels, leave_one_out=False) == 1.0
    loo = knn_accuracy(feats, labels, chunk_size=33)
    assert 0.1 < loo < 0.45  # chance is 1/4


def test_knn_voting_known_answer() -> None:
    # Query at angle 0; database: one class-0 vector at 10 degrees, two class-1 vectors at 30/40.
    ang = torch.tensor([10.0, 30.0, 40.0]).deg2rad()
    db = torch.stack([ang.cos(), ang.sin()], dim=1)
    q = torch.tensor([[1.0, 0.0]])
    lab = torch.tensor([7, 3, 3])
    assert knn_predict(q, db, lab, k=1).item() == 7
    assert knn_predict(q, db, lab, k=3).item() == 3  # majority
    assert knn_predict(q, db, lab, k=3, temperature=0.01).item() == 7  # sharp weighting
    # Tie (k=2, one vote each) goes to the more similar class.
    assert knn_predict(q, db, lab, k=2).item() == 7
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(db, lab, k=3)


def test_kmeans_recovers_clusters_and_is_deterministic() -> None:
    feats, labels = _blobs(n_per=40, n_classes=6, spread=0.2, seed=2)
    res = kmeans(feats, k=6, seed=0, chunk_size=50)
    assert res.converged
    assert cluster_purity(res.assignments, labels) == 1.0
    again = kmeans(feats, k=6, seed=0)
    assert torch.equal(res.assignments, again.assignments)
    assert torch.allclose(res.centroids, again.centroids)
    assert res.inertia == pytest.approx(
        ((feats - res.centroids[res.assignments]) ** 2).sum().item(), rel=1e-4
    )
    with pytest.raises(ValueError, match="k must be"):
        kmeans(feats, k=0)


def test_kmeans_with_duplicate_points() -> None:
    feats = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    res = kmeans(feats, k=3, seed=1)  # more clusters than distinct points
    assert cluster_purity(res.assignments, torch.tensor([0] * 5 + [1] * 5)) == 1.0
    assert res.inertia == pytest.approx(0.0)


def test_cluster_purity_known_value() -> None:
    assign = torch.tensor([0, 0, 0, 1, 1, 2])
    labels = torch.tensor([5, 5, 6, 6, 6, 5])
    assert cluster_purity(assign, labels) == pytest.approx(5 / 6)
    assert cluster_purity([9] * 6, labels.tolist()) == pytest.approx(3 / 6)


def test_labels_from_filenames() -> None:
    paths = [
        "/data/n02085620_Chihuahua.JPEG",
        "n01440764_tench.JPEG",
        "x/n02085620_Chihuahua_2.JPEG",
    ]
    labels, synsets = labels_from_filenames(paths)
    assert synsets == ["n01440764", "n02085620"]
    assert labels.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="synset"):
        labels_from_filenames(["README.md"])


def test_labels_from_imagenet_sample_names() -> None:
    env = os.environ.get("VQRAE_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    folder = root / "imagenet-sample"
    if not folder.is_dir():
        pytest.skip(f"ImageNet sample not found at {folder} (set VQRAE_SHARED_DATA)")
    paths = sorted(folder.glob("*.JPEG"))
    labels, synsets = labels_from_filenames(paths)
    assert len(paths) == len(synsets) == 1000  # one image per class
    assert synsets[0] == "n01440764" and labels[0].item() == 0  # tench is class 0
    assert sorted(labels.tolist()) == list(range(1000))
