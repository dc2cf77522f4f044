"""The engine's ``save_frozen=False``: checkpoints without the frozen parameters, exact resume."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from vqrae.training.engine import EngineConfig, OptimizerConfig, TrainEngine


@dataclass
class _Out:
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


class _FrozenBase(nn.Module):
    """A frozen 'pretrained' trunk (tied in and out maps) under a trained head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(8, 8)
        self.out = nn.Linear(8, 8, bias=False)
        self.out.weight = self.trunk.weight  # tied, as an LM's embedding and head
        self.register_buffer("scale", torch.tensor(2.0))
        self.head = nn.Linear(8, 1)
        self.trunk.requires_grad_(False)

    def forward(self, batch: torch.Tensor) -> _Out:
        loss = (self.head(self.out(self.trunk(batch)) * self.scale) ** 2).mean()
        return _Out(loss, {"loss": loss.detach()})


def _engine(save_frozen: bool) -> TrainEngine:
    config = EngineConfig(backend="torch", global_batch=2, micro_batch=2, save_frozen=save_frozen)
    return TrainEngine(_FrozenBase(), config, OptimizerConfig(lr=1e-2), total_steps=4)


def _batches(step: int) -> list[torch.Tensor]:
    return [torch.randn(2, 8, generator=torch.Generator().manual_seed(step))]


def test_frozen_parameters_are_left_out_and_the_run_resumes_exactly(tmp_path) -> None:
    whole = _engine(save_frozen=False)
    for step in range(4):
        whole.train_step(_batches(step))
    first = _engine(save_frozen=False)
    for step in range(2):
        first.train_step(_batches(step))
    path = first.save(tmp_path, {}, keep=1)
    saved = load_file(str(path / "model.safetensors"))
    assert set(saved) == {"head.weight", "head.bias", "scale"}
    resumed = _engine(save_frozen=False)
    assert resumed.load(path)["left_out"] == ["out.weight", "trunk.bias", "trunk.weight"]
    for step in range(2, 4):
        resumed.train_step(_batches(step))
    for key, value in whole.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[key], value, rtol=0, atol=0)


def test_a_checkpoint_that_does_not_fit_the_frozen_split_is_refused(tmp_path) -> None:
    engine = _engine(save_frozen=False)
    path = engine.save(tmp_path, {}, keep=1)
    other = _engine(save_frozen=False)
    other.module.trunk.requires_grad_(True)  # now the checkpoint lacks trained weights
    other.module.head.requires_grad_(False)
    state = torch.load(path / "trainer_state.pt", weights_only=True)
    state["left_out"] = ["trunk.weight"]  # an inconsistent record
    torch.save(state, path / "trainer_state.pt")
    with pytest.raises(ValueError, match="does not fit the module"):
        other.load(path)
    full = _engine(save_frozen=True).save(tmp_path / "full", {}, keep=1)
    assert "trunk.weight" in load_file(str(full / "model.safetensors"))
