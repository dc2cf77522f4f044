"""Tests for codebook usage, perplexity and the (distributed) code histogram."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqrae.eval.codebook import CodeHistogram, codebook_perplexity, codebook_usage


def test_usage() -> None:
    assert codebook_usage(np.array([0, 3, 0, 1])) == 0.5
    assert codebook_usage(torch.zeros(8, dtype=torch.int64)) == 0.0
    assert codebook_usage(torch.ones(8)) == 1.0


def test_perplexity_known_values() -> None:
    assert codebook_perplexity(torch.full((16,), 5)) == pytest.approx(16.0)
    assert codebook_perplexity(np.array([0, 7, 0, 0])) == pytest.approx(1.0)
    assert codebook_perplexity(np.array([1, 1, 0, 2])) == pytest.approx(
        math.exp(-(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5)))
    )
    with pytest.raises(ValueError, match="empty"):
        codebook_perplexity(np.zeros(3))
    with pytest.raises(ValueError, match="non-negative"):
        codebook_perplexity(np.array([1, -1]))


def test_histogram_counts_and_validation() -> None:
    hist = CodeHistogram(10)
    hist.update(torch.tensor([[1, 2, 2], [9, 1, 1]]))
    hist.update(np.array([0]))
    hist.update(torch.empty(0, dtype=torch.long))
    assert hist.counts.tolist() == [1, 3, 2, 0, 0, 0, 0, 0, 0, 1]
    assert hist.usage() == 0.4
    assert torch.equal(hist.global_counts(), hist.counts)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        hist.update(torch.tensor([10]))
    with pytest.raises(TypeError, match="integers"):
        hist.update(torch.tensor([1.0]))
    hist.reset()
    assert hist.counts.sum() == 0


def _indices() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 50, (12, 7), generator=g)  # 50 of 64 codes reachable


def _distributed_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        hist = CodeHistogram(64)
        hist.update(_indices()[rank::world])
        torch.save(
            {"counts": hist.global_counts(), "local": hist.counts, "usage": hist.usage()},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_global_counts_equal_with_and_without_world_size(tmp_path: Path) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(
        _distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True
    )
    single = CodeHistogram(64)
    single.update(_indices())
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.equal(out["counts"], single.counts)
        assert out["local"].sum() < single.counts.sum()  # local histogram left untouched
        assert out["usage"] == single.usage()
