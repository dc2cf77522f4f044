"""The training engine: DeepSpeed JSON filling, batch plans, exact resume and 2 processes == 1,
for plain PyTorch and DeepSpeed ZeRO 1, 2 and 3 (gloo on CPU)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from vqrae.training.checkpoints import find_latest, load_checkpoint
from vqrae.training.engine import (
    EngineConfig,
    OptimizerConfig,
    TrainEngine,
    deepspeed_available,
    fill_deepspeed_config,
    read_deepspeed_config,
)

REPO = Path(__file__).resolve().parents[2]
DEEPSPEED = REPO / "configs" / "deepspeed"


# ----------------------------------------------------------------------------- configs


def test_deepspeed_json_autos_come_from_the_recipe() -> None:
    raw = read_deepspeed_config(DEEPSPEED / "zero1.json")
    filled = fill_deepspeed_config(
        raw, global_batch=16, micro_batch=2, accumulation=4, grad_clip=1.0, bf16=False
    )
    assert filled["train_batch_size"] == 16
    assert filled["train_micro_batch_size_per_gpu"] == 2
    assert filled["gradient_accumulation_steps"] == 4
    assert filled["gradient_clipping"] == 1.0
    assert filled["bf16"] == {"enabled": False}
    assert filled["zero_optimization"]["stage"] == 1
    assert raw["train_batch_size"] == "auto"  # the input is not modified
    for stage in (2, 3):
        assert (
            read_deepspeed_config(DEEPSPEED / f"zero{stage}.json")["zero_optimization"]["stage"]
            == stage
        )


def test_deepspeed_json_that_disagrees_with_the_recipe_is_an_error(tmp_path) -> None:
    raw = {"train_batch_size": 32, "zero_optimization": {"stage": 1}}
    with pytest.raises(ValueError, match="train_batch_size=32"):
        fill_deepspeed_config(
            raw, global_batch=16, micro_batch=2, accumulation=4, grad_clip=1.0, bf16=False
        )
    with pytest.raises(ValueError, match="bf16.enabled"):
        fill_deepspeed_config(
            {"bf16": {"enabled": True}},
            global_batch=4,
            micro_batch=4,
            accumulation=1,
            grad_clip=0.0,
            bf16=False,
        )
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"optimizer": {"type": "Adam"}}))
    with pytest.raises(ValueError, match="optim section"):
        read_deepspeed_config(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        read_deepspeed_config(path)


def test_global_batch_must_split_into_micro_batches() -> None:
    config = EngineConfig(backend="torch", global_batch=12, micro_batch=2)
    assert (
        config.accumulation(1) == 6 and config.accumulation(2) == 3 and config.accumulation(3) == 2
    )
    with pytest.raises(ValueError, match="not divisible"):
        config.accumulation(4)
    with pytest.raises(ValueError, match="engine.deepspeed"):
        EngineConfig(backend="deepspeed")
    with pytest.raises(ValueError, match="optim.betas"):
        OptimizerConfig(betas=(0.9, 1.5))


# ----------------------------------------------------------------------------- in process


@dataclass
class _Out:
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


class _Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> _Out:
        x, y = batch
        loss = (self.net(x).squeeze(-1) - y).pow(2).mean()
        return _Out(loss, {"loss": loss.detach()})


def _data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 6, generator=g), torch.randn(n, generator=g)


def _engine(micro: int, **optim) -> TrainEngine:
    config = EngineConfig(backend="torch", global_batch=8, micro_batch=micro)
    return TrainEngine(_Regression(), config, OptimizerConfig(lr=1e-2, **optim), total_steps=4)


def test_accumulated_micro_batches_equal_one_global_batch() -> None:
    x, y = _data()
    results = []
    for micro in (2, 8):
        engine = _engine(micro, weight_decay=0.1, warmup_steps=2)
        assert engine.accumulation == 8 // micro
        for step in range(2):
            rows = range(step * 8, step * 8 + 8)
            chunks = [list(rows)[i : i + micro] for i in range(0, 8, micro)]
            out = engine.train_step([(x[c], y[c]) for c in chunks])
        assert out.lr == pytest.approx(1e-2)  # warm-up: step 1 of 2 reaches the peak
        results.append({k: v.clone() for k, v in engine.module.state_dict().items()})
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], atol=1e-6, rtol=1e-5)


def test_checkpoint_holds_the_documented_files_and_restores_the_step(tmp_path) -> None:
    x, y = _data()
    engine = _engine(8)
    engine.train_step([(x[:8], y[:8])])
    path = engine.save(tmp_path / "ckpt", {"trainer": {"seen": 8}}, keep=2)
    assert path.name == "step_00000001"
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors",
        "rng",
        "trainer_state.pt",
    ]
    assert [p.name for p in (path / "rng").iterdir()] == ["rank_00000.pt"]
    tensors, state = load_checkpoint(path)  # the shared reader understands it
    assert state["step"] == 1 and state["backend"] == "torch" and state["trainer"] == {"seen": 8}
    assert tensors["model"].keys() == engine.module.state_dict().keys()
    after_save = torch.rand(3)  # the RNG draw that follows the saved state
    fresh = _engine(8)
    torch.manual_seed(123)
    assert fresh.load(path)["trainer"] == {"seen": 8} and fresh.step == 1
    assert torch.equal(torch.rand(3), after_save)
    torch.testing.assert_close(
        fresh.module.state_dict()["net.0.weight"], engine.module.state_dict()["net.0.weight"]
    )
    for _ in range(3):
        engine.train_step([(x[:8], y[:8])])
        engine.save(tmp_path / "ckpt", {}, keep=2)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "step_00000003",
        "step_00000004",
    ]
    assert find_latest(tmp_path / "ckpt").name == "step_00000004"


# ----------------------------------------------------------------------------- processes

BACKENDS = {
    "torch": ["--backend", "torch"],
    "zero1": ["--backend", "deepspeed", "--deepspeed", str(DEEPSPEED / "zero1.json")],
    "zero2": ["--backend", "deepspeed", "--deepspeed", str(DEEPSPEED / "zero2.json")],
    "zero3": ["--backend", "deepspeed", "--deepspeed", "ZERO3_TEST"],
}


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker_args(backend: str, tmp_path: Path) -> list[str]:
    args = list(BACKENDS[backend])
    if "ZERO3_TEST" in args:  # partition every parameter, however small (the default keeps
        # tensors under 1e5 elements whole, which would leave this tiny model unpartitioned)
        config = json.loads((DEEPSPEED / "zero3.json").read_text())
        config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
        path = tmp_path / "zero3-test.json"
        path.write_text(json.dumps(config))
        args[args.index("ZERO3_TEST")] = str(path)
    return args


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


def _worker(backend: str, tmp_path: Path, out: Path, processes: int) -> None:
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        launcher += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    cmd = [*launcher, "-m", "tests.training.engine_worker", *_worker_args(backend, tmp_path)]
    _run([*cmd, "--out", str(out), "--save-at", "2", "--resume-check"])


@pytest.fixture(scope="module")
def one_process_torch(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("ref")
    _worker("torch", out, out, processes=1)
    return load_file(str(out / "full.safetensors"))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], exact: bool) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], atol=2e-6, rtol=1e-5, msg=key)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_resume_reaches_the_uninterrupted_weights(backend, tmp_path, one_process_torch) -> None:
    if backend != "torch" and not deepspeed_available():
        pytest.skip("deepspeed not installed")
    _worker(backend, tmp_path, tmp_path, processes=1)
    full = load_file(str(tmp_path / "full.safetensors"))
    _assert_same(full, load_file(str(tmp_path / "resumed.safetensors")), exact=True)
    losses = json.loads((tmp_path / "full.json").read_text())
    assert json.loads((tmp_path / "resumed.json").read_text()) == losses[2:]
    _assert_same(full, one_process_torch, exact=False)  # every backend: the same update
    checkpoint = find_latest(tmp_path / "checkpoints")
    expected = {"model.safetensors", "rng", "trainer_state.pt"}
    if backend != "torch":
        expected.add("deepspeed")
    assert {p.name for p in checkpoint.iterdir()} == expected


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_two_processes_equal_one_on_the_same_global_batch(
    backend, tmp_path, one_process_torch
) -> None:
    if backend != "torch" and not deepspeed_available():
        pytest.skip("deepspeed not installed")
    _worker(backend, tmp_path, tmp_path, processes=2)
    two = load_file(str(tmp_path / "full.safetensors"))
    _assert_same(two, one_process_torch, exact=False)
    _assert_same(two, load_file(str(tmp_path / "resumed.safetensors")), exact=True)
    assert sorted(p.name for p in (find_latest(tmp_path / "checkpoints") / "rng").iterdir()) == [
        "rank_00000.pt",
        "rank_00001.pt",
    ]
    if backend == "zero1":  # DeepSpeed's partitions resume only at the world size they were cut
        cmd = [sys.executable, "-m", "tests.training.engine_worker"]
        cmd += [*_worker_args(backend, tmp_path), "--out", str(tmp_path), "--resume"]
        result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        assert result.returncode != 0 and "resume with 2, not 1" in result.stderr
