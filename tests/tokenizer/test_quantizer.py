"""SimVQ: nearest codes, fp32 island, cache, loss weighting, straight-through, usage counts."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqrae.tokenizer.quantizer import SimVQ


def _brute_force_indices(vq: SimVQ, z: torch.Tensor) -> torch.Tensor:
    codebook = vq.codebook @ vq.codebook_transform.weight.t()  # (k, e)
    dists = torch.cdist(z.reshape(-1, vq.dim).double(), codebook.double())
    return dists.argmin(dim=1).reshape(z.shape[:-1])


@pytest.fixture
def vq() -> SimVQ:
    torch.manual_seed(0)
    module = SimVQ(codebook_size=256, dim=24, chunk_size=7)
    with torch.no_grad():
        module.codebook_transform.weight.add_(0.3 * torch.randn(24, 24))
    return module


def test_codebook_is_frozen_random_normal_with_dim_scaled_std() -> None:
    vq = SimVQ(codebook_size=4096, dim=64)
    assert not any(p is vq.codebook for p in vq.parameters())
    assert abs(vq.codebook.std().item() - 64**-0.5) < 0.01
    assert torch.equal(SimVQ(4096, 64).codebook, vq.codebook)  # seeded
    assert not torch.equal(SimVQ(4096, 64, codebook_seed=1).codebook, vq.codebook)


def test_nearest_indices_match_brute_force(vq: SimVQ) -> None:
    z = torch.randn(3, 50, 24)
    out = vq.eval()(z)
    assert out.indices.shape == (3, 50)
    assert torch.equal(out.indices, _brute_force_indices(vq, z))


def test_chunking_does_not_change_results(vq: SimVQ) -> None:
    z = torch.randn(2, 33, 24)
    small = vq.eval()(z).indices
    vq.chunk_size = 10_000
    assert torch.equal(small, vq(z).indices)


def test_quantizer_runs_in_fp32_under_autocast(vq: SimVQ) -> None:
    z = torch.randn(2, 16, 24)
    vq.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z)
    assert out.codes.dtype == torch.float32
    assert torch.equal(out.indices, vq(z).indices)


def test_projected_codebook_cached_in_eval_and_invalidated_when_w_changes(vq: SimVQ) -> None:
    vq.eval()
    first, _ = vq.projected_codebook()
    again, _ = vq.projected_codebook()
    assert again is first
    with torch.no_grad():
        vq.codebook_transform.weight.mul_(2.0)
    changed, _ = vq.projected_codebook()
    assert changed is not first
    assert torch.allclose(changed, 2.0 * first)
    vq.train()
    assert vq.projected_codebook()[0] is not changed  # no cache while training


def test_loss_weighting_and_gradient_routing(vq: SimVQ) -> None:
    vq.train()
    z = torch.randn(2, 10, 24, requires_grad=True)
    out = vq(z)
    expected_commit = (z.detach() - vq.indices_to_codes(out.indices).detach()).pow(2).mean()
    assert torch.allclose(out.commitment_loss, expected_commit)
    assert torch.allclose(out.codebook_loss, expected_commit)  # same value, different gradients
    assert torch.allclose(out.loss, out.codebook_loss + 0.25 * out.commitment_loss)
    # The codebook term trains only W; the commitment term only the input.
    grad_w = torch.autograd.grad(
        out.commitment_loss, vq.codebook_transform.weight, allow_unused=True
    )[0]
    assert grad_w is None or torch.count_nonzero(grad_w) == 0
    (grad_z,) = torch.autograd.grad(out.codebook_loss, z, retain_graph=True, allow_unused=True)
    assert grad_z is None or torch.count_nonzero(grad_z) == 0
    (grad_z,) = torch.autograd.grad(out.loss, z)
    quantized = vq.indices_to_codes(out.indices).detach()
    assert torch.allclose(grad_z, 0.25 * 2 * (z.detach() - quantized) / z.numel(), atol=1e-7)


def test_straight_through_codes_equal_lookup_exactly(vq: SimVQ) -> None:
    for train in (True, False):
        vq.train(train)
        z = torch.randn(2, 12, 24, requires_grad=True)
        out = vq(z)
        with torch.no_grad():
            assert torch.equal(out.codes, vq.indices_to_codes(out.indices))
        (grad,) = torch.autograd.grad(out.codes.sum(), z)
        assert torch.equal(grad, torch.ones_like(z))


def test_indices_to_codes_uses_projected_codebook(vq: SimVQ) -> None:
    vq.eval()
    idx = torch.arange(10)
    raw = vq.codebook[idx]
    assert not torch.allclose(vq.indices_to_codes(idx), raw)
    assert torch.allclose(
        vq.indices_to_codes(idx), raw @ vq.codebook_transform.weight.t(), atol=1e-6
    )


def test_every_parameter_gets_a_gradient(vq: SimVQ) -> None:
    vq.train()
    z = torch.randn(2, 8, 24, requires_grad=True)
    out = vq(z)
    (out.loss + out.codes.square().mean()).backward()
    assert vq.codebook_transform.weight.grad is not None
    assert torch.count_nonzero(vq.codebook_transform.weight.grad) > 0


def test_usage_counts_in_training_only(vq: SimVQ) -> None:
    vq.eval()
    vq(torch.randn(1, 40, 24))
    assert vq.usage_counts.sum() == 0
    vq.train()
    out = vq(torch.randn(1, 40, 24))
    assert vq.usage_counts.sum() == 40
    assert vq.codebook_usage() == pytest.approx(len(out.indices.unique()) / 256)
    vq.reset_usage()
    assert vq.codebook_usage() == 0.0


def test_rejects_wrong_input_width_and_bad_arguments(vq: SimVQ) -> None:
    with pytest.raises(ValueError, match="last dimension 24"):
        vq(torch.randn(2, 3, 23))
    for kwargs in (
        {"codebook_size": 1, "dim": 4},
        {"codebook_size": 8, "dim": 0},
        {"codebook_size": 8, "dim": 4, "beta": -1.0},
    ):
        with pytest.raises(ValueError):
            SimVQ(**kwargs)


def _usage_worker(
    rank: int, world_size: int, init_file: str, z: torch.Tensor, result: dict
) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        torch.manual_seed(0)
        vq = SimVQ(codebook_size=64, dim=8).train()
        shard = z.chunk(world_size)[rank]
        vq(shard)
        result[rank] = vq.usage_counts.clone()
    finally:
        dist.destroy_process_group()


def test_usage_counts_are_all_reduced_across_processes() -> None:
    torch.manual_seed(1)
    z = torch.randn(4, 30, 8)
    single = SimVQ(codebook_size=64, dim=8).train()
    single(z)
    with tempfile.TemporaryDirectory() as tmp:
        manager = mp.Manager()
        result = manager.dict()
        mp.spawn(_usage_worker, args=(2, os.path.join(tmp, "init"), z, result), nprocs=2)
        for rank in range(2):
            assert torch.equal(result[rank], single.usage_counts)


def test_meta_device_construction() -> None:
    with torch.device("meta"):
        vq = SimVQ(16384, 1536)
    out = vq(torch.empty(1, 4, 1536, device="meta"))
    assert out.codes.shape == (1, 4, 1536)


def test_restart_moves_only_dead_codes_onto_inputs(vq: SimVQ) -> None:
    candidates = torch.randn(40, vq.dim, generator=torch.Generator().manual_seed(1))
    dead = torch.zeros(vq.codebook_size, dtype=torch.bool)
    dead[[3, 17, 200]] = True
    before = vq.codebook.clone()
    moved = vq.restart_codes(dead, candidates, torch.Generator().manual_seed(0))
    assert moved == 3
    assert torch.equal(vq.codebook[~dead], before[~dead])  # the live codes are untouched
    projected, _ = vq.projected_codebook()  # W(C) of the moved rows are input vectors
    distances = torch.cdist(projected[dead].double(), candidates.double())
    assert distances.min(dim=1).values.max() < 1e-4
    assert len(set(distances.argmin(dim=1).tolist())) == 3  # drawn without replacement
    again = SimVQ(codebook_size=256, dim=24, chunk_size=7)
    again.load_state_dict(vq.state_dict())
    again.codebook.copy_(before)
    again.restart_codes(dead, candidates, torch.Generator().manual_seed(0))
    assert torch.equal(again.codebook, vq.codebook)  # seeded
    assert vq.restart_codes(torch.zeros_like(dead), candidates, torch.Generator()) == 0


def test_training_call_keeps_its_inputs_as_restart_candidates(vq: SimVQ) -> None:
    z = torch.randn(2, 5, vq.dim)
    vq.eval()
    vq(z)
    assert vq.last_input is None
    vq.train()
    vq(z)
    assert vq.last_input is None  # not kept unless asked
    vq.keep_last_input = True
    vq(z)
    assert torch.equal(vq.last_input, z.reshape(-1, vq.dim))
