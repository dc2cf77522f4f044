"""Tests for the Fréchet distance and the streaming feature statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqrae.eval.fid import (
    FeatureStats,
    fid_from_features,
    fid_from_stats,
    frechet_distance,
    load_stats,
    save_stats,
)

DIM = 24


def _reference_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """Independent float64 FID: tr((S1 S2)^1/2) from the eigenvalues of sqrt(S1) S2 sqrt(S1)."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root1 @ s2 @ root1)
    tr_covmean = np.sqrt(np.clip(lam, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def _features(seed: int, n: int = 600, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(1234).normal(size=(DIM, DIM)) / np.sqrt(DIM)
    return scale * rng.normal(size=(n, DIM)) @ mixing + shift


def test_self_distance_is_zero() -> None:
    f = _features(0)
    assert abs(fid_from_features(f, f)) < 1e-6


def test_matches_independent_implementation() -> None:
    f1, f2 = _features(1), _features(2, shift=0.3, scale=1.4)
    ours = fid_from_features(f1, f2)
    assert ours == pytest.approx(_reference_fid(f1, f2), rel=1e-8, abs=1e-8)
    # Torch input, float32, gives the same number (computation is float64 inside).
    t = fid_from_features(torch.from_numpy(f1).float(), torch.from_numpy(f2).float())
    assert t == pytest.approx(
        _reference_fid(f1.astype(np.float32), f2.astype(np.float32)), rel=1e-6
    )


def test_closed_form_for_diagonal_gaussians() -> None:
    mu1, mu2 = np.zeros(4), np.array([1.0, 0.0, 2.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0, 1.0]), np.diag([4.0, 4.0, 1.0, 0.25])
    expected = 5.0 + sum(
        (np.sqrt(a) - np.sqrt(b)) ** 2 for a, b in [(1, 4), (4, 4), (9, 1), (1, 0.25)]
    )
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)


def test_monotone_in_mean_shift_and_covariance_scale() -> None:
    ref = _features(3)
    shifts = [fid_from_features(ref, _features(4, shift=s)) for s in (0.0, 0.2, 0.5, 1.0)]
    scales = [fid_from_features(ref, _features(4, scale=s)) for s in (1.0, 1.5, 2.0, 3.0)]
    assert all(a < b for a, b in zip(shifts, shifts[1:], strict=False)), shifts
    assert all(a < b for a, b in zip(scales, scales[1:], strict=False)), scales


def test_singular_covariances_stay_finite_and_real() -> None:
    # Fewer samples than dimensions: both covariances are singular.
    f1, f2 = _features(5, n=DIM // 2), _features(6, n=DIM // 2, shift=0.1)
    value = fid_from_features(f1, f2)
    assert np.isfinite(value)
    assert value == pytest.approx(_reference_fid(f1, f2), rel=1e-3)


def test_streaming_stats_equal_batch() -> None:
    f = _features(7, n=1000, shift=5.0)  # large mean: checks cancellation in the covariance
    stats = FeatureStats(DIM)
    for chunk in np.array_split(f, [3, 10, 400, 401, 999]):
        stats.update(chunk)
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mean(), f.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats.cov(), np.cov(f, rowvar=False), rtol=0, atol=1e-10)
    # Merge of two halves equals the whole; all_reduced without a process group is a copy.
    a, b = FeatureStats(DIM), FeatureStats(DIM)
    a.update(torch.from_numpy(f[:321]))
    b.update(f[321:])
    merged = a.merge(b).all_reduced()
    np.testing.assert_allclose(merged.cov(), stats.cov(), rtol=0, atol=1e-10)
    g = _features(8, n=700, shift=0.2)
    other = FeatureStats(DIM)
    other.update(g)
    assert fid_from_stats(stats, other) == pytest.approx(fid_from_features(f, g), rel=1e-9)


def test_feature_stats_validation() -> None:
    stats = FeatureStats(DIM)
    with pytest.raises(ValueError, match="no features"):
        stats.mean()
    with pytest.raises(ValueError, match=f"\\(N, {DIM}\\)"):
        stats.update(np.zeros((3, DIM + 1)))
    stats.update(np.zeros((1, DIM)))
    with pytest.raises(ValueError, match="at least 2"):
        stats.cov()


def test_stats_file_round_trip(tmp_path: Path) -> None:
    f = _features(9)
    path = tmp_path / "ref" / "stats.npz"
    save_stats(path, f.mean(0), np.cov(f, rowvar=False))
    mu, sigma = load_stats(path)
    assert frechet_distance(mu, sigma, f.mean(0), np.cov(f, rowvar=False)) == pytest.approx(
        0.0, abs=1e-6
    )
    assert [p.name for p in path.parent.iterdir()] == ["stats.npz"]  # no temp file left


def _distributed_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        f = _features(10, n=301)
        stats = FeatureStats(DIM)
        stats.update(f[rank::world])  # each rank sees a different shard
        reduced = stats.all_reduced()
        np.savez(Path(out_dir) / f"rank{rank}.npz", mu=reduced.mean(), sigma=reduced.cov())
    finally:
        dist.destroy_process_group()


def test_all_reduced_over_two_processes(tmp_path: Path) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(
        _distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True
    )
    f = _features(10, n=301)
    for rank in range(2):
        mu, sigma = load_stats(tmp_path / f"rank{rank}.npz")
        np.testing.assert_allclose(mu, f.mean(0), atol=1e-12)
        np.testing.assert_allclose(sigma, np.cov(f, rowvar=False), atol=1e-10)
