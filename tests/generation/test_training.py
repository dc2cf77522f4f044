"""Generator training: the recipes, SIGKILL then --resume == uninterrupted, 2 processes == 1
(plain PyTorch under torchrun, DeepSpeed ZeRO-2 under the deepspeed launcher), ZeRO-3 with the
visual-slice head, LoRA, a trimmed vocabulary, the run folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vqrae.generation.model import ImageGenerator
from vqrae.generation.train_config import load_generator_config
from vqrae.generation.trainer import GeneratorTrainer
from vqrae.training.checkpoints import find_latest, load_checkpoint
from vqrae.training.engine import deepspeed_available

from .conftest import ARCHITECTURE

REPO = Path(__file__).resolve().parents[2]
needs_deepspeed = pytest.mark.skipif(not deepspeed_available(), reason="deepspeed not installed")


def _recipe(tmp_path: Path, codes: Path, tokenizer: Path, **extra) -> Path:
    recipe = {
        "model": {"architecture": ARCHITECTURE, "text_tokenizer": str(tokenizer), "head": "visual"},
        "data": {"train": str(codes), "caption_dropout": 0.2},
        "engine": {"backend": "torch", "global_batch": 4, "micro_batch": 2},
        "optim": {"lr": 3e-3, "eps": 1e-15, "warmup_steps": 2, "weight_decay": 0.01},
        "steps": 8,
        "max_length": 48,
        "log_every": 2,
        "checkpoint_every": 2,
        "keep_checkpoints": 2,
        "samples": {"every": 4, "prompts": ["a photo of a red circle", "two stars"]},
    }
    for key, value in extra.items():
        if isinstance(value, dict):
            recipe[key] = {**recipe.get(key, {}), **value}
        else:
            recipe[key] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _cli(recipe: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "vqrae.cli", "train-generator", "--config", str(recipe), "--out", str(out),
            "--no-progress", *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _weights(run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, state = load_checkpoint(find_latest(run / "checkpoints"))
    return tensors["model"], state


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 5e-6) -> None:
    """Equal up to float reassociation (AdamW's eps of 1e-15 turns a gradient's last-bit
    difference into a visible step, far below the learning rate's 3e-3 a lost gradient gives)."""
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-5, msg=key)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, shapes_codes, text_tokenizer_dir) -> Path:
    """An uninterrupted one-process run of the tiny recipe."""
    root = tmp_path_factory.mktemp("one")
    recipe = _recipe(root, shapes_codes, text_tokenizer_dir)
    _run([sys.executable, *_cli(recipe, root / "run")])
    return root / "run"


def test_recipes_hold_the_paper_s_settings() -> None:
    paper = load_generator_config(REPO / "configs" / "generation" / "paper.yaml")
    assert paper.model.base == "qwen3-0.6b" and paper.model.num_codes == 16384
    assert paper.model.head == "full" and paper.max_length == 1536
    o = paper.optim
    assert (o.lr, o.betas, o.eps, o.warmup_steps, o.schedule) == (
        1e-4,
        (0.9, 0.999),
        1e-15,
        4000,
        "constant",
    )
    assert paper.engine.precision == "bf16" and paper.data.caption_dropout == 0.1
    zero = json.loads(Path(paper.engine.deepspeed).read_text())
    assert zero["zero_optimization"]["stage"] == 1
    demo = load_generator_config(REPO / "configs" / "generation" / "cpu-demo.yaml")
    assert demo.model.base is None and demo.model.architecture["model_type"] == "qwen3"
    assert demo.model.trim_vocabulary and demo.model.num_codes == 2048
    assert demo.optim.eps == 1e-15 and demo.optim.schedule == "constant"  # from the base
    assert demo.engine.backend == "torch" and demo.engine.deepspeed is None
    with pytest.raises(ValueError, match="exactly one"):
        load_generator_config(REPO / "configs" / "generation" / "cpu-demo.yaml",
                              ["model.base=qwen3-0.6b"])  # fmt: skip
    with pytest.raises(ValueError, match="optim.lrr"):
        load_generator_config(REPO / "configs" / "generation" / "paper.yaml", ["optim.lrr=1"])


def test_killed_run_resumes_to_the_same_weights(
    one_process, tmp_path, shapes_codes, text_tokenizer_dir
) -> None:
    recipe = _recipe(tmp_path, shapes_codes, text_tokenizer_dir)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *_cli(recipe, killed)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "step_00000004").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert int(find_latest(killed / "checkpoints").name[5:]) < 8
    _run([sys.executable, *_cli(recipe, killed, "--resume")])
    expected, expected_state = _weights(one_process)
    resumed, state = _weights(killed)
    assert state["step"] == expected_state["step"] == 8
    for key in expected:
        assert torch.equal(resumed[key], expected[key]), key
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == [
        "step_00000006",
        "step_00000008",
    ]


def test_run_folder_holds_samples_logs_and_a_loadable_generator(one_process) -> None:
    assert {p.name for p in one_process.iterdir()} >= {
        "checkpoints",
        "samples",
        "tb",
        "model",
        "config.yaml",
        "run.json",
    }
    assert sorted(p.name for p in (one_process / "samples").iterdir()) == [
        "step_00000004.png",
        "step_00000008.png",
    ]
    assert any((one_process / "tb").iterdir())
    record = json.loads((one_process / "run.json").read_text())
    assert (
        record["backend"] == "torch" and record["accumulation"] == 2 and record["train_rows"] == 24
    )
    generator = ImageGenerator.from_pretrained(one_process / "model", device="cpu")
    assert generator.config.grid == (4, 4) and generator.config.max_length == 48
    final = _weights(one_process)[0]
    loaded = generator.lm.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, final["lm." + key]), key  # the export is the last step's weights


def test_two_processes_equal_one(one_process, tmp_path, shapes_codes, text_tokenizer_dir) -> None:
    recipe = _recipe(tmp_path, shapes_codes, text_tokenizer_dir, samples={"every": 0})
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]  # fmt: skip
    _run([*launcher, *_cli(recipe, tmp_path / "two")])
    two, state = _weights(tmp_path / "two")
    assert state["world_size"] == 2
    _close(two, _weights(one_process)[0])


@pytest.mark.slow  # two DeepSpeed processes through its launcher: ~35 s on 2 shared cores
@needs_deepspeed
def test_deepspeed_launcher_zero2_equals_one_process(
    one_process, tmp_path, shapes_codes, text_tokenizer_dir
) -> None:
    engine = {
        "backend": "deepspeed",
        "deepspeed": str(REPO / "configs" / "deepspeed" / "zero2.json"),
    }
    recipe = _recipe(
        tmp_path, shapes_codes, text_tokenizer_dir, engine=engine, samples={"every": 0}
    )
    launcher = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--no_local_rank",
                "--master_port", str(_free_port()), "--module"]  # fmt: skip
    _run([*launcher, *_cli(recipe, tmp_path / "ds")[1:]])
    weights, state = _weights(tmp_path / "ds")
    assert state["backend"] == "deepspeed" and state["world_size"] == 2
    _close(weights, _weights(one_process)[0], atol=5e-5)


@needs_deepspeed
def test_zero3_trains_the_visual_head_like_plain_pytorch(
    one_process, tmp_path, shapes_codes, text_tokenizer_dir
) -> None:
    config = json.loads((REPO / "configs" / "deepspeed" / "zero3.json").read_text())
    config["zero_optimization"]["stage3_param_persistence_threshold"] = 0  # partition everything
    (tmp_path / "z3.json").write_text(json.dumps(config))
    engine = {"backend": "deepspeed", "deepspeed": str(tmp_path / "z3.json")}
    recipe = _recipe(tmp_path, shapes_codes, text_tokenizer_dir, engine=engine)
    _run([sys.executable, *_cli(recipe, tmp_path / "run")])
    weights, state = _weights(tmp_path / "run")
    assert state["backend"] == "deepspeed"
    assert (tmp_path / "run" / "samples" / "step_00000008.png").is_file()  # gathered to sample
    _close(weights, _weights(one_process)[0], atol=5e-5)


def test_lora_trains_adapters_and_the_visual_rows_only(
    tmp_path, shapes_codes, text_tokenizer_dir
) -> None:
    recipe = _recipe(tmp_path, shapes_codes, text_tokenizer_dir, steps=2, samples={"every": 0},
                     model={"lora": {"enabled": True, "rank": 4, "alpha": 8}})  # fmt: skip
    config = load_generator_config(recipe)
    trainer = GeneratorTrainer(config, tmp_path / "run", progress=False)
    lm = trainer.engine.module.lm
    before = lm.get_input_embeddings().token_adapter.base_layer.weight.detach().clone()
    trainable = [n for n, p in lm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "trainable_tokens" in n for n in trainable)
    path = trainer.fit()
    generator = ImageGenerator.from_pretrained(path, device="cpu")  # merged: a plain HF folder
    after = generator.lm.get_input_embeddings().weight
    text = trainer.vocab.text_vocab_size
    assert torch.equal(after[:text], before[:text])  # text rows untouched
    assert not torch.equal(after[trainer.vocab.code_slice], before[trainer.vocab.code_slice])
    assert (
        "peft"
        not in json.loads((path / "config.json").read_text()).get("architectures", [""])[0].lower()
    )


def test_trimmed_vocabulary_keeps_the_model_small(tmp_path, shapes_codes) -> None:
    from vqrae.llm.testing import qwen3_tokenizer

    try:
        qwen3_tokenizer()
    except Exception as exc:  # noqa: BLE001 - the asset's sources are unreachable here
        pytest.skip(f"qwen3-tokenizer unavailable: {exc}")
    recipe = _recipe(tmp_path, shapes_codes, Path("unused"), steps=1, samples={"every": 0},
                     model={"text_tokenizer": "qwen3-tokenizer", "trim_vocabulary": True},
                     export_dtype="float16")  # fmt: skip
    trainer = GeneratorTrainer(load_generator_config(recipe), tmp_path / "run", progress=False)
    vocab = trainer.vocab
    assert vocab.text_vocab_size < 1000  # of Qwen3's 151,669
    path = trainer.fit()
    generator = ImageGenerator.from_pretrained(path, device="cpu")
    table = load_file(str(path / "model.safetensors"))["model.embed_tokens.weight"]
    assert table.shape[0] < 1000 + 64 + 64 and table.dtype == torch.float16  # the shipped form
    assert generator.lm.dtype == torch.float32  # loaded under the CPU policy
    unseen = "a simple drawing of a hexagon, shown on a soft gradient"  # held-out words
    ids = generator.text_tokenizer(unseen)["input_ids"]
    assert generator.text_tokenizer.decode(ids) == unseen
