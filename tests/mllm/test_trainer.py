"""Training stages on the shared engine: recipes, both stages, resume after SIGKILL, 2 == 1 process,
DeepSpeed ZeRO-2/3 against plain PyTorch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vqrae.mllm.model import MLLM
from vqrae.mllm.train_config import load_mllm_train_config
from vqrae.mllm.trainer import MLLMTrainer

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "mllm"


def _recipe(tmp_path: Path, tiny_config, shapes_dir: Path, **top) -> Path:
    recipe = {
        "model": {"tokenizer": tiny_config.tokenizer, "lm": tiny_config.lm, "pool": 2},
        "batch_size": 4,
        "micro_batch_size": 2,
        "steps": 4,
        "log_every": 1,
        "checkpoint_every": 2,
        "device": "cpu",
        "data": {
            "sources": [{"kind": "shapes", "path": str(shapes_dir), "style": "captions"}],
            "cache_dir": str(tmp_path / "features"),
        },
        "optim": {"lr": 1.0e-2},
        "stages": {
            2: {
                "tune": "lora",
                "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                "data": {"sources": [{"kind": "shapes", "path": str(shapes_dir), "style": "vqa"}]},
            }
        },
        **top,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _projector(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "projector.safetensors"))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol)


def test_the_paper_and_demo_recipes_hold_llavas_settings() -> None:
    one = load_mllm_train_config(CONFIGS / "llava15.yaml", stage=1)
    two = load_mllm_train_config(CONFIGS / "llava15.yaml", stage=2)
    assert (one.model.lm, one.model.projector, one.model.chat_template) == (
        "vicuna-7b-v1.5",
        "mlp2x_gelu",
        "vicuna_v1",
    )
    assert (one.tune, one.template, one.batch_size, one.optim.lr, one.epochs) == (
        "projector",
        "plain",
        256,
        1e-3,
        1.0,
    )
    assert (two.tune, two.template, two.batch_size, two.optim.lr) == ("full", "chat", 128, 2e-5)
    assert Path(two.deepspeed).name == "zero3.json" and Path(two.deepspeed).is_file()
    assert two.optim.warmup_ratio == 0.03 and two.data.max_length == 2048
    assert (
        load_mllm_train_config(CONFIGS / "llava15-13b.yaml", stage=2).model.lm == "vicuna-13b-v1.5"
    )
    demo = load_mllm_train_config(CONFIGS / "cpu-demo.yaml", stage=2)
    assert demo.model.lm == "smollm2-135m-instruct" and demo.tune == "lora"
    assert {s.kind for s in demo.data.sources} == {"shapes", "imagenet"}
    with pytest.raises(ValueError, match="stage 1 trains the projector only"):
        load_mllm_train_config(CONFIGS / "cpu-demo.yaml", stage=1, overrides=["tune=lora"])


def test_stage_one_trains_the_projector_and_stage_two_a_lora(
    tmp_path, tiny_config, shapes_dir
) -> None:
    recipe = _recipe(tmp_path, tiny_config, shapes_dir)
    cfg = load_mllm_train_config(recipe, stage=1)
    first = MLLMTrainer(cfg, tmp_path / "s1", progress=False).fit()
    assert first.step == 4 and first.last_loss is not None and first.seconds_per_step > 0
    run = tmp_path / "s1"
    assert {"config.yaml", "run.json", "checkpoints", "model", "tb"} <= {
        p.name for p in run.iterdir()
    }
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_00000002",
        "step_00000004",
    ]
    fresh = MLLM.build(tiny_config, device="cpu", seed=0)
    trained = MLLM.from_pretrained(run / "model", device="cpu")
    assert not torch.equal(trained.projector.linears[0].weight, fresh.projector.linears[0].weight)
    for (name, a), b in zip(
        trained.lm.state_dict().items(), fresh.lm.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name  # the LM stayed frozen
    with pytest.raises(ValueError, match="holds checkpoints"):
        MLLMTrainer(cfg, run, progress=False).fit()

    captions = f"[{{kind: shapes, path: '{shapes_dir}', style: captions}}]"  # short samples
    overrides = [f"init_from={run / 'model'}", "steps=2", f"data.sources={captions}"]
    cfg2 = load_mllm_train_config(recipe, stage=2, overrides=overrides)
    second = MLLMTrainer(cfg2, tmp_path / "s2", progress=False).fit()
    assert second.step == 2 and cfg2.template == "chat"
    tuned = MLLM.from_pretrained(tmp_path / "s2" / "model", device="cpu", merge_lora=False)
    assert tuned.lm_weights == "lora"
    assert (tmp_path / "s2" / "model" / "adapter" / "adapter_model.safetensors").is_file()


def _cli(*args: str, env: dict | None = None) -> list[str]:
    return [sys.executable, "-m", "vqrae.cli", "train-mllm", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_to_the_same_weights(
    tmp_path, tiny_config, shapes_dir
) -> None:
    recipe = _recipe(tmp_path, tiny_config, shapes_dir, steps=12)
    common = ["--config", str(recipe), "--stage", "1", "--no-progress"]
    whole = subprocess.run(
        _cli(*common, "--out", str(tmp_path / "whole")), env=_env(), capture_output=True, text=True
    )
    assert whole.returncode == 0, whole.stderr[-2000:]
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(*common, "--out", str(run)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "step_00000004").is_dir() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "model").exists(), "the run ended before it could be killed"
    resumed = subprocess.run(
        _cli(*common, "--out", str(run), "--resume"), env=_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same(_projector(run), _projector(tmp_path / "whole"), atol=0.0)


@pytest.mark.slow
def test_two_processes_train_as_one_on_the_same_global_batch(
    tmp_path, tiny_config, shapes_dir
) -> None:
    recipe = _recipe(tmp_path, tiny_config, shapes_dir)
    common = ["--config", str(recipe), "--stage", "2", "--no-progress"]
    one = subprocess.run(
        _cli(*common, "--out", str(tmp_path / "one")), env=_env(), capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29631",
    ]
    two = subprocess.run(
        [*torchrun, "-m", "vqrae.cli", "train-mllm", *common, "--out", str(tmp_path / "two")],
        env=_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    _assert_same(_projector(tmp_path / "two"), _projector(tmp_path / "one"), atol=1e-6)
    adapter = "model/adapter/adapter_model.safetensors"
    _assert_same(
        load_file(str(tmp_path / "two" / adapter)), load_file(str(tmp_path / "one" / adapter)), 1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("zero", [2, 3])
def test_deepspeed_zero_trains_as_plain_pytorch(tmp_path, tiny_config, shapes_dir, zero) -> None:
    pytest.importorskip("deepspeed")
    recipe = _recipe(tmp_path, tiny_config, shapes_dir)
    ds = REPO / "configs" / "deepspeed" / f"zero{zero}.json"
    common = ["--config", str(recipe), "--stage", "2", "--no-progress"]
    plain = subprocess.run(
        _cli(*common, "--out", str(tmp_path / "plain")), env=_env(), capture_output=True, text=True
    )
    assert plain.returncode == 0, plain.stderr[-2000:]
    zero_run = subprocess.run(
        _cli(*common, "--out", str(tmp_path / "zero"), "--set", f"deepspeed={ds}"),
        env=_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert zero_run.returncode == 0, zero_run.stderr[-2000:]
    _assert_same(_projector(tmp_path / "zero"), _projector(tmp_path / "plain"), atol=1e-6)
