"""Training: exact resume after SIGKILL, 2-process DDP == 1 process, data stream, objective."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import vqrae
from vqrae.data.training import (
    StepSampler,
    TrainImageDataset,
    collate_images,
    open_collection,
    split_indices,
)
from vqrae.eval.metrics import ssim_from_tensors
from vqrae.tokenizer.objective import ObjectiveConfig, TokenizerObjective
from vqrae.tokenizer.train_config import load_train_config
from vqrae.training.checkpoints import find_latest, load_checkpoint
from vqrae.training.recipes import parse_set_overrides

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(14):
        base = rng.random(3) * 255
        noise = rng.random((70, 84, 3)) * 60
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(
            folder / f"img{i:02d}.png"
        )
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


def _recipe(tmp_path: Path, image_folder: Path, **extra) -> Path:
    recipe = {
        "model": "vqrae-test-tiny",
        "steps": 12,
        "batch_size": 4,
        "grad_accum": 2,
        "ema_decay": 0.9,
        "log_every": 1,
        "image_every": 0,
        "eval_every": 0,
        "checkpoint_every": 3,
        "keep_checkpoints": 2,
        "data": {"train": str(image_folder), "val_count": 3, "num_workers": 0},
        "optim": {"warmup_steps": 2},
        "objective": {"perceptual_weight": 0.0},
        "stages": {
            2: {"objective": {"distill_weight": 1.0, "gan_weight": 0.1, "gan_start_step": 2}}
        },
    }
    recipe.update(extra)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _train_cmd(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vqrae.cli",
        "train-tokenizer",
        "--config",
        str(recipe),
        "--out",
        str(out),
        "--stage",
        "2",
        "--no-progress",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def test_killed_run_resumes_to_the_same_weights(tmp_path, image_folder) -> None:
    # Dead-code restarts every 5 steps: their window must survive the kill too.
    recipe = _recipe(tmp_path, image_folder, steps=30, code_restart_every=5)
    full = tmp_path / "full"
    subprocess.run(
        _train_cmd(recipe, full), check=True, env=_env(), timeout=300, capture_output=True
    )

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(recipe, killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "step_00000009").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    latest = find_latest(killed / "checkpoints")
    assert latest is not None and int(latest.name.split("_")[1]) < 30
    subprocess.run(
        _train_cmd(recipe, killed, "--resume"),
        check=True,
        env=_env(),
        timeout=300,
        capture_output=True,
    )

    a_tensors, a_state = load_checkpoint(find_latest(full / "checkpoints"))
    b_tensors, b_state = load_checkpoint(find_latest(killed / "checkpoints"))
    assert a_state["step"] == b_state["step"] == 30
    for group in ("model", "ema", "discriminator"):
        assert a_tensors[group].keys() == b_tensors[group].keys()
        for key in a_tensors[group]:
            assert torch.equal(a_tensors[group][key], b_tensors[group][key]), (group, key)
    assert torch.equal(a_state["usage_counts"], b_state["usage_counts"])
    assert a_state["skipped_images"] == b_state["skipped_images"]
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == [
        "step_00000027",
        "step_00000030",
    ]
    assert sorted(p.name for p in find_latest(killed / "checkpoints").iterdir()) == [
        "discriminator.safetensors",
        "ema.safetensors",
        "model.safetensors",
        "trainer_state.pt",
    ]
    exported = vqrae.VQRAE.from_pretrained(killed / "model")
    assert exported.config.encoder == "tiny-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun() -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
    ]


def test_fsdp_run_resumes_to_the_same_weights(tmp_path, image_folder) -> None:
    recipe = _recipe(
        tmp_path,
        image_folder,
        steps=4,
        checkpoint_every=2,
        distributed="fsdp",
        objective={"perceptual_weight": 0.0, "gan_start_step": 0},
    )
    out = tmp_path / "run"
    cmd = _torchrun() + _train_cmd(recipe, out)[1:]
    result = subprocess.run(cmd, env=_env(), timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    final = find_latest(out / "checkpoints")
    expected, expected_state = load_checkpoint(final)
    assert expected_state["step"] == 4
    import shutil

    shutil.rmtree(final)  # as if killed between the checkpoints of steps 2 and 4
    cmd = _torchrun() + _train_cmd(recipe, out, "--resume")[1:]
    result = subprocess.run(cmd, env=_env(), timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed, state = load_checkpoint(find_latest(out / "checkpoints"))
    assert state["step"] == 4
    assert torch.equal(state["usage_counts"], expected_state["usage_counts"])
    for group in ("model", "ema", "discriminator"):
        for key, value in expected[group].items():
            assert torch.equal(resumed[group][key], value), f"{group}.{key}"


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_equal_one_process_on_the_same_global_batch(
    tmp_path, image_folder, strategy
) -> None:
    recipe = _recipe(
        tmp_path,
        image_folder,
        steps=3,
        ema_decay=0.0,
        checkpoint_every=3,
        distributed=strategy,
        objective={"perceptual_weight": 0.0, "gan_start_step": 0},
    )
    one = tmp_path / "one"
    two = tmp_path / "two"
    subprocess.run(
        _train_cmd(recipe, one), check=True, env=_env(), timeout=300, capture_output=True
    )
    cmd = _torchrun() + _train_cmd(recipe, two)[1:]
    result = subprocess.run(cmd, env=_env(), timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    a_tensors, a_state = load_checkpoint(find_latest(one / "checkpoints"))
    b_tensors, b_state = load_checkpoint(find_latest(two / "checkpoints"))
    assert torch.equal(a_state["usage_counts"], b_state["usage_counts"])
    assert a_state["usage_counts"].sum() == 3 * 4 * 16  # steps x batch x tokens
    assert a_state["skipped_images"] == b_state["skipped_images"]
    for group in ("model", "discriminator"):
        for key, value in a_tensors[group].items():
            torch.testing.assert_close(
                b_tensors[group][key], value, atol=2e-5, rtol=1e-4, msg=f"{group}.{key}"
            )
    moved = load_file(str(one / "model" / "model.safetensors"))
    init = vqrae.create_model("vqrae-test-tiny").state_dict()
    assert not torch.equal(moved["decoder.head.weight"], init["decoder.head.weight"])


def test_step_sampler_splits_global_batches_and_resumes() -> None:
    full = StepSampler(range(10), global_batch=4, accum=2, seed=3)
    stream = [ref.index for ref, _ in zip(full, range(24), strict=False)]
    assert sorted(stream[:10]) == list(range(10))  # first epoch is a permutation
    ranks = [StepSampler(range(10), 4, accum=2, rank=r, world_size=2, seed=3) for r in range(2)]
    per_rank = [[ref.index for ref, _ in zip(s, range(12), strict=False)] for s in ranks]
    interleaved = []
    for micro in range(12):  # micro-batch of 2 per step-half, 1 per rank
        interleaved.append(per_rank[micro % 2][micro // 2])
    assert interleaved == stream[:12]
    resumed = StepSampler(range(10), 4, accum=2, seed=3, start_step=3)
    assert [r.index for r, _ in zip(resumed, range(8), strict=False)] == stream[12:20]
    with pytest.raises(ValueError, match="divisible"):
        StepSampler(range(10), 5, accum=2)


def test_split_is_fixed_by_seed_and_disjoint() -> None:
    train, val = split_indices(100, 10, seed=0)
    assert len(val) == 10 and not set(train) & set(val) and len(train) == 90
    assert split_indices(100, 10, seed=0) == (train, val)
    assert split_indices(100, 10, seed=1)[1] != val


def test_dataset_replaces_and_counts_unreadable_images(image_folder) -> None:
    collection = open_collection(image_folder)
    broken = [i for i in range(len(collection)) if collection.load(i).name.endswith("broken.png")][
        0
    ]
    pool = [broken, 3, 5]
    dataset = TrainImageDataset(collection, 56, pool=pool)
    batch, skipped = collate_images([dataset[broken], dataset[3], dataset[5]])
    assert skipped == 1 and batch.shape == (3, 3, 56, 56)
    assert dataset[broken][0].shape == (3, 56, 56)
    assert TrainImageDataset(collection, 56, train=False)[broken] is None


def test_augmentation_is_a_function_of_the_seed(image_folder) -> None:
    from vqrae.data.training import SampleRef

    dataset = TrainImageDataset(open_collection(image_folder), 56)
    assert torch.equal(dataset[SampleRef(0, 11)][0], dataset[SampleRef(0, 11)][0])
    assert not torch.equal(dataset[SampleRef(0, 11)][0], dataset[SampleRef(0, 12)][0])


def test_hf_dataset_directory_is_a_source(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (30, 40), (i * 20, 0, 0)) for i in range(5)]
    ds = datasets.Dataset.from_dict({"image": images}).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "ds"))
    collection = open_collection(tmp_path / "ds")
    assert len(collection) == 5
    assert collection.load(3).image.getpixel((0, 0)) == (60, 0, 0)


def test_config_merges_stage_and_overrides_and_names_unknown_keys(tmp_path, image_folder) -> None:
    recipe = _recipe(tmp_path, image_folder)
    cfg = load_train_config(recipe, stage=2, overrides=["optim.lr=2e-4", "steps=7"])
    assert cfg.stage == 2 and cfg.steps == 7 and cfg.optim.lr == 2e-4
    assert cfg.objective.distill_weight == 1.0 and cfg.objective.gan_weight == 0.1
    assert load_train_config(recipe, stage=1).objective.distill_weight == 0.0
    with pytest.raises(ValueError, match="optim.lrr"):
        load_train_config(recipe, overrides=["optim.lrr=1"])
    with pytest.raises(ValueError, match="key=value"):
        parse_set_overrides(["steps"])


def test_stage_two_objective_terms_and_gradients() -> None:
    torch.manual_seed(0)
    model = vqrae.create_model("vqrae-test-tiny").train()
    import copy

    teacher = copy.deepcopy(model.encoder)
    objective = TokenizerObjective(
        ObjectiveConfig(
            perceptual_weight=0.0, distill_weight=1.0, gan_weight=0.1, adaptive_gan_weight=True
        ),
        teacher=teacher,
    )
    images = torch.rand(2, 3, 56, 56)
    out = objective.generator_loss(model, images, step=0)
    assert out.metrics["distill"] == 0.0  # student == teacher at the start
    assert out.metrics["gan_weight"] > 0
    objective.discriminator.requires_grad_(False)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    objective.discriminator.requires_grad_(True)
    d_out = objective.discriminator_loss(images, out.recon, step=0)
    d_out.loss.backward()
    assert all(p.grad is not None for p in objective.discriminator.parameters())
    assert d_out.metrics["gan_d"] > 0
    with pytest.raises(ValueError, match="teacher"):
        TokenizerObjective(ObjectiveConfig(perceptual_weight=0.0, distill_weight=1.0))


def test_ssim_term_uses_the_evaluation_kernel_and_adds_to_the_loss() -> None:
    torch.manual_seed(0)
    model = vqrae.create_model("vqrae-test-tiny").train()
    images = torch.rand(2, 3, 56, 56)
    plain = TokenizerObjective(ObjectiveConfig(perceptual_weight=0.0))
    with_ssim = TokenizerObjective(ObjectiveConfig(perceptual_weight=0.0, ssim_weight=0.5))
    base = plain.generator_loss(model, images, step=0)
    out = with_ssim.generator_loss(model, images, step=0)
    assert "ssim" not in base.metrics
    recon = model(images, clamp=False).recon.detach()
    # the evaluation's kernel (tested against scikit-image), on unclamped outputs, in float64
    expected = float(ssim_from_tensors(images.double(), recon.double(), data_range=1.0).mean())
    assert float(out.metrics["ssim"]) == pytest.approx(expected, abs=1e-5)
    assert float((out.loss - base.loss).detach()) == pytest.approx(0.5 * (1 - expected), abs=1e-5)
    out.loss.backward()
    assert model.decoder.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="ssim_weight"):
        ObjectiveConfig(ssim_weight=-1.0)


def test_periodic_validation_writes_metrics_and_report(tmp_path, image_folder) -> None:
    recipe = _recipe(tmp_path, image_folder, steps=2, eval_every=2, eval_images=2, image_every=2)
    out = tmp_path / "run"
    subprocess.run(
        _train_cmd(recipe, out, "--stage", "1"),
        check=True,
        env=_env(),
        timeout=300,
        capture_output=True,
    )
    metrics = json.loads((out / "eval" / "step_00000002" / "metrics.json").read_text())
    assert metrics["num_images"] == 2 and metrics["psnr"] > 0
    assert (out / "eval" / "step_00000002" / "report.html").exists()
    assert (out / "samples" / "step_00000002.png").exists()
    assert list((out / "tb").iterdir())
    assert yaml.safe_load((out / "config.yaml").read_text())["stage"] == 1


def test_stage_one_trains_on_cached_features_and_reuses_the_cache(tmp_path, image_folder) -> None:
    from vqrae.tokenizer.trainer import TokenizerTrainer

    recipe = _recipe(
        tmp_path, image_folder, steps=4, grad_accum=1, precompute_features=True,
        calibration_images=4, model_overrides={"encoder_scale": 2, "decoder_merge": 2},
    )  # fmt: skip
    out = tmp_path / "run"
    cfg = load_train_config(recipe, stage=1)
    trainer = TokenizerTrainer(cfg, out, progress=False)
    cache = trainer.feature_cache
    assert cache is not None and (out / "feature_cache.pt").is_file()
    # The unreadable image was left out and counted; the rest are the readable training items.
    collection = open_collection(image_folder)
    train, _ = split_indices(len(collection), 3, 0)
    assert cache.skipped == 1 and len(cache.indices) == len(train) - 1
    assert cache.features.shape == (len(train) - 1, 64, 32)  # 56 px read at 112 px: 8x8
    crops = TrainImageDataset(collection, 56, train=False)
    first = crops[cache.indices[0]]
    assert torch.equal(cache.images[0], (first * 255).round().to(torch.uint8))
    with torch.no_grad():
        expected = trainer.model.encode(first[None])[0]
    assert torch.allclose(cache.features[0].float(), expected, atol=2e-3)
    trainer.fit()
    stamp = (out / "feature_cache.pt").stat().st_mtime_ns
    resumed = TokenizerTrainer(cfg, out, resume=True, progress=False)
    assert (out / "feature_cache.pt").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert torch.equal(resumed.feature_cache.features, cache.features)
    with pytest.raises(ValueError, match="stage 1 only"):
        load_train_config(recipe, stage=2, overrides=["precompute_features=true"])


def test_stage_two_can_train_only_the_last_encoder_blocks(tmp_path, image_folder) -> None:
    from vqrae.tokenizer.trainer import TokenizerTrainer

    recipe = _recipe(tmp_path, image_folder, steps=2, grad_accum=1, trainable_encoder_blocks=1)
    cfg = load_train_config(recipe, stage=2, overrides=["objective.gan_weight=0"])
    trainer = TokenizerTrainer(cfg, tmp_path / "run", progress=False)
    encoder = trainer.model.encoder
    trained = {n for n, p in encoder.named_parameters() if p.requires_grad}
    last = len(encoder.blocks) - 1
    assert trained and all(n.startswith(f"blocks.{last}.") for n in trained)
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    trainer.fit()
    changed = {n for n, p in encoder.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trained  # the frozen blocks did not move


def test_partial_stage_two_teacher_shares_the_frozen_blocks_exactly(tmp_path, image_folder) -> None:
    from vqrae.tokenizer.teacher import SharedPrefixTeacher, frozen_prefix_matches
    from vqrae.tokenizer.trainer import TokenizerTrainer

    recipe = _recipe(tmp_path, image_folder, steps=1, grad_accum=1, trainable_encoder_blocks=1)
    cfg = load_train_config(recipe, stage=2, overrides=["objective.gan_weight=0"])
    trainer = TokenizerTrainer(cfg, tmp_path / "run", progress=False)
    shared = trainer.objective.teacher
    assert isinstance(shared, SharedPrefixTeacher) and shared.start == 1
    full = shared.teacher
    images = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(3))
    model = trainer.model.train()
    with torch.no_grad():
        encoder_input = model.encoder_input(images)
        for weight in model.encoder.blocks[-1].parameters():  # the student's trained block moved
            weight.add_(0.5)
        model(images)  # the student's forward keeps its hidden state before the last block
        from_shared = shared(encoder_input)
        assert torch.allclose(from_shared, full(encoder_input), atol=1e-6)
        assert not torch.allclose(from_shared, model.encode(images), atol=1e-3)
        assert torch.equal(shared(encoder_input), full(encoder_input))  # nothing kept: in full
        model.encoder.blocks[0].attn.proj.weight.add_(0.5)
    assert not frozen_prefix_matches(model.encoder, full, 1)
    shared.remove()


def test_init_from_can_add_weights_but_not_reshape_them(tmp_path, image_folder) -> None:
    from vqrae.tokenizer.trainer import TokenizerTrainer

    torch.manual_seed(0)
    source = vqrae.create_model("vqrae-test-tiny").save_pretrained(tmp_path / "source")
    recipe = _recipe(tmp_path, image_folder, steps=1, grad_accum=1, init_from=str(source))
    cfg = load_train_config(
        recipe, stage=1, overrides=["model_overrides.decoder_refine_channels=4"]
    )
    grown = TokenizerTrainer(cfg, tmp_path / "grown", progress=False).model.eval()
    loaded = vqrae.VQRAE.from_pretrained(source)
    assert grown.config.decoder_refine_channels == 4
    images = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(grown(images).recon, loaded(images).recon)  # refiner starts at identity
    cfg = load_train_config(recipe, stage=1, overrides=["model_overrides.codebook_dim=64"])
    with pytest.raises(ValueError, match="change the shape"):
        TokenizerTrainer(cfg, tmp_path / "reshaped", progress=False)


def test_frozen_quantizer_trains_a_decoder_on_the_source_codes(tmp_path, image_folder) -> None:
    from vqrae.tokenizer.trainer import TokenizerTrainer

    torch.manual_seed(0)
    source = vqrae.create_model("vqrae-test-tiny").save_pretrained(tmp_path / "source")
    recipe = _recipe(
        tmp_path, image_folder, steps=3, grad_accum=1, init_from=str(source),
        freeze_quantizer=True, optim={"warmup_steps": 0, "weight_decay": 0.1},
    )  # fmt: skip
    trainer = TokenizerTrainer(load_train_config(recipe, stage=1), tmp_path / "run", progress=False)
    trainer.fit()
    trained, loaded = trainer.model.eval(), vqrae.VQRAE.from_pretrained(source)
    images = torch.rand(3, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = trained(images), loaded(images)
    assert torch.equal(ours.indices, theirs.indices)  # the same tokens...
    assert not torch.allclose(ours.recon, theirs.recon)  # ...through a decoder that learned
    for name in ("quant_proj.weight", "quantizer.codebook_transform.weight", "quantizer.codebook"):
        assert torch.equal(trained.state_dict()[name], loaded.state_dict()[name]), name
    for bad in (["init_from=null"], ["code_restart_every=5"]):
        with pytest.raises(ValueError, match="freeze_quantizer"):
            load_train_config(recipe, stage=1, overrides=bad)


def test_dead_codes_restart_onto_training_inputs(tmp_path, image_folder) -> None:
    from vqrae.tokenizer.trainer import TokenizerTrainer

    recipe = _recipe(
        tmp_path, image_folder, steps=4, grad_accum=1, code_restart_every=2,
        code_restart_min_share=0.5, calibration_images=0,
    )  # fmt: skip
    trainer = TokenizerTrainer(load_train_config(recipe, stage=1), tmp_path / "run", progress=False)
    quantizer = trainer.model.quantizer
    images = torch.rand(4, 3, 56, 56)
    trainer.train_step([images])
    counts = quantizer.usage_counts.clone()
    dead = counts.float() < 0.5 * counts.sum() / quantizer.codebook_size
    assert dead.any() and not dead.all()
    before = quantizer.codebook.clone()
    moved = trainer.restart_dead_codes()
    assert moved == int(dead.sum())
    assert torch.equal(quantizer.codebook[~dead], before[~dead])
    projected, _ = quantizer.projected_codebook()
    distances = torch.cdist(projected[dead].double(), quantizer.last_input.double())
    assert distances.min(dim=1).values.max() < 1e-3  # inputs have norms of about 5
    assert trainer.restart_dead_codes() == 0  # the window starts again: no tokens, no restarts
    assert trainer._restart_due() is False  # step 1
