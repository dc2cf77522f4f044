"""Training an understanding model, one LLaVA stage at a time, on the shared training engine.

The engine (:class:`vqrae.training.engine.TrainEngine`) owns the optimiser, the backend (plain
PyTorch or DDP, DeepSpeed ZeRO 1/2/3), gradient accumulation and exact checkpoints; this module
owns what is particular to understanding:

* the model: built fresh (stage 1) or read from ``init_from`` (stage 2 starts from the stage-1
  projector); the encoder and, in stage 1, the LM frozen; in stage 2 a LoRA adapter or every LM
  weight trained as well. The engine trains :class:`_Objective` over
  :class:`~vqrae.mllm.model.ProjectedLM` only: the frozen visual half stays outside it;
* the data: the recipe's sources, every sample tokenized and checked once before the first step,
  image features computed once into a cache (the encoder is frozen in both stages), and each
  step's global batch a function of the step (:class:`~vqrae.mllm.data.StepBatches`), so the
  batches are the same at any world size and after a resume;
* the checkpoints: the engine's, without the frozen parameters (``save_frozen: false``): the
  LM loaded by reference is rebuilt on resume, so a stage-1 checkpoint of SmolLM2 is the
  projector and its optimiser state, not 540 MB;
* the loss: the mean over the assistant's tokens of the whole global batch (the target count is
  summed over processes before the step), so how a batch is split over processes and
  micro-batches changes nothing (LLaVA's per-micro-batch mean does depend on it).

A run folder holds ``checkpoints/`` (the engine's), ``model/`` (the trained model's folder, see
:mod:`vqrae.mllm.model`), ``tb/``, ``config.yaml`` and ``run.json``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from vqrae.mllm.data import (
    Batch,
    ConversationDataset,
    StepBatches,
    check_samples,
    collate,
)
from vqrae.mllm.feature_cache import FeatureCache
from vqrae.mllm.model import MLLM, ProjectedLM
from vqrae.mllm.sources import load_sources
from vqrae.mllm.train_config import MLLMTrainConfig
from vqrae.training.checkpoints import find_latest
from vqrae.training.engine import EngineConfig, OptimizerConfig, TrainEngine
from vqrae.training.logs import open_tensorboard, progress_bar
from vqrae.training.run_dir import write_run_files
from vqrae.utils.distributed import DistributedContext

__all__ = ["MLLMTrainer", "TrainResult"]

log = logging.getLogger(__name__)


@dataclass
class _Step:
    """What the engine's objective receives: a micro-batch and its loss scale."""

    batch: Batch
    loss_scale: float


@dataclass
class _Output:
    """The objective's result (the engine's ``ObjectiveOutput``)."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


class _Objective(nn.Module):
    """The summed token loss of a micro-batch, scaled so that the engine's averaging (over
    micro-batches and processes) leaves the mean over the global batch's targets."""

    def __init__(self, language: ProjectedLM) -> None:
        super().__init__()
        self.language = language

    def forward(self, step: _Step) -> _Output:
        b = step.batch
        out = self.language(b.input_ids, b.attention_mask, b.features, b.labels)
        assert out.loss_sum is not None
        metrics = {
            "loss_sum": out.loss_sum.detach(),
            "targets": torch.tensor(float(b.num_targets), device=out.loss_sum.device),
        }
        return _Output(out.loss_sum * step.loss_scale, metrics)


@dataclass
class TrainResult:
    """How a stage ended."""

    step: int
    model_dir: Path
    last_loss: float | None
    seconds_per_step: float | None
    cpu_seconds_per_step: float | None = None
    is_main: bool = True

    def summary(self, stage: int) -> str:
        """One line for the terminal."""
        loss = "n/a" if self.last_loss is None else f"{self.last_loss:.4f}"
        speed = ""
        if self.seconds_per_step is not None:
            speed = f", median {self.seconds_per_step:.2f} s/step"
        if self.cpu_seconds_per_step is not None:
            speed += f" ({self.cpu_seconds_per_step:.2f} CPU-s/step)"
        return (
            f"stage {stage} ended at step {self.step} (loss {loss}{speed}); model: {self.model_dir}"
        )


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def _set_trainable(model: MLLM, cfg: MLLMTrainConfig) -> None:
    """Freeze what the stage does not train; attach a LoRA adapter for ``tune: lora``."""
    model.vision.requires_grad_(False)
    model.projector.requires_grad_(True)
    if cfg.tune == "lora":
        if model.lm_weights == "reference":
            model.lm.requires_grad_(False)
            model.attach_lora(cfg.lora)
        elif model.lm_weights != "lora":
            raise ValueError(f"tune: lora, but {cfg.init_from} holds a fully tuned LM")
    elif cfg.tune == "full":
        model.lm.requires_grad_(True)
        model.tune_full_lm()
    else:
        if model.lm_weights != "reference":
            raise ValueError(
                f"tune: projector, but {cfg.init_from} carries {model.lm_weights} LM weights"
            )
        model.lm.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.lm.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        model.lm.config.use_cache = False


class MLLMTrainer:
    """Trains one stage as a :class:`~vqrae.mllm.train_config.MLLMTrainConfig` describes.

    Args:
        config: the stage's recipe.
        out_dir: the run folder.
        resume: continue from the latest checkpoint in ``out_dir/checkpoints`` (an error when
            there is none).
        progress: show a progress bar (main process).
    """

    def __init__(
        self,
        config: MLLMTrainConfig,
        out_dir: str | Path,
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        self.cfg = config
        self.out = Path(out_dir)
        self.resume = resume
        self.progress = progress
        self.engine: TrainEngine | None = None

    # ------------------------------------------------------------------ set-up
    def _build_model(self, device: torch.device) -> MLLM:
        cfg = self.cfg
        if cfg.init_from:
            model = MLLM.from_pretrained(
                cfg.init_from, device=device, precision="32", trainable=True, merge_lora=False
            )
        else:
            model = MLLM.build(cfg.model, device=device, precision="32", seed=cfg.seed)
        model.train()
        model.vision.eval()
        _set_trainable(model, cfg)
        return model

    def _dataset(self, model: MLLM, ctx: DistributedContext) -> ConversationDataset:
        cfg = self.cfg
        conversations = load_sources(cfg.data.sources)
        cache = None
        if cfg.data.cache_features:
            root = Path(cfg.data.cache_dir) if cfg.data.cache_dir else self.out / "feature_cache"
            images = [c.image for c in conversations if c.image is not None]
            cache = FeatureCache(root, model.vision, images)
            bar = progress_bar(
                len(cache.images) // ctx.world_size,
                0,
                "image features",
                self.progress and ctx.is_main,
            )
            cache.build(ctx, cfg.data.encode_batch_size, bar.update if bar is not None else None)
            if bar is not None:
                bar.close()
            cache.load()
            if cache.failed:
                before = len(conversations)
                conversations = [c for c in conversations if c.image is None or c.image in cache]
                log.warning(
                    "%d conversation(s) left out: %d image(s) unreadable (first: %s)",
                    before - len(conversations),
                    len(cache.failed),
                    next(iter(cache.failed.items())),
                )
        assert cfg.template is not None
        dataset = ConversationDataset(
            conversations,
            model.tokenizer,
            model.config,
            template=cfg.template,
            image_token_id=model.image_token_id,
            num_image_tokens=model.num_image_tokens,
            max_length=cfg.data.max_length,
            cache=cache,
            vision=model.vision,
        )
        check = check_samples(dataset)
        if ctx.is_main:
            log.info("training data: %s", check.summary())
        self.sample_check = check
        return dataset

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Run the stage to its last step; returns where the model was written."""
        cfg = self.cfg
        engine_cfg = EngineConfig(
            backend="deepspeed" if cfg.deepspeed else "torch",
            deepspeed=cfg.deepspeed,
            precision=cfg.precision,
            global_batch=cfg.batch_size,
            micro_batch=cfg.micro_batch_size,
            save_frozen=False,  # the frozen LM is rebuilt by reference: 540 MB per checkpoint
        )
        ctx = DistributedContext.from_environment(cfg.device)
        torch.manual_seed(cfg.seed)
        model = self._build_model(ctx.device)
        dataset = self._dataset(model, ctx)
        batches = StepBatches(len(dataset), cfg.batch_size, cfg.seed)
        total = cfg.steps if cfg.steps is not None else batches.steps_for(cfg.epochs)
        optim = OptimizerConfig(
            lr=cfg.optim.lr,
            betas=cfg.optim.betas,
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
            warmup_steps=math.ceil(cfg.optim.warmup_ratio * total),
            schedule="cosine",
            min_lr=cfg.optim.min_lr,
            grad_clip=cfg.optim.grad_clip,
        )
        objective = _Objective(model.language)
        engine = TrainEngine(objective, engine_cfg, optim, total, context=ctx)
        self.engine = engine
        checkpoints = self.out / "checkpoints"
        if self.resume:
            latest = find_latest(checkpoints)
            if latest is None:
                raise ValueError(f"--resume: no checkpoint in {checkpoints}")
            engine.load(latest)
            log.info("resumed from %s at step %d", latest, engine.step)
        elif find_latest(checkpoints) is not None:
            raise ValueError(f"{checkpoints} holds checkpoints: pass --resume, or another --out")
        if ctx.is_main:
            write_run_files(self.out, cfg.to_dict(), self._record(model, ctx, engine, total))

        start = engine.step
        loader = DataLoader(
            dataset,
            batch_sampler=list(
                batches.iter_micro_batches(
                    start, total, ctx.rank, ctx.world_size, cfg.micro_batch_size
                )
            ),
            collate_fn=lambda examples: collate(examples, int(model.tokenizer.pad_token_id)),
            num_workers=cfg.data.num_workers,
        )
        bar = progress_bar(total, start, f"mllm stage {cfg.stage}", self.progress and ctx.is_main)
        writer = open_tensorboard(self.out / "tb", ctx.is_main)
        micro = iter(loader)
        last_loss, times, cpu_times = None, [], []
        for step in range(start, total):
            began, began_cpu = time.perf_counter(), time.process_time()
            parts = [next(micro).to(ctx.device) for _ in range(engine.accumulation)]
            for part in parts:
                if part.features is None and part.images is not None:
                    with engine.autocast():
                        part.features = model.vision(part.images).float()
            targets = ctx.sum_int(sum(p.num_targets for p in parts))
            scale = engine.accumulation * ctx.world_size / max(targets, 1)
            result = engine.train_step([_Step(p, scale) for p in parts])
            times.append(time.perf_counter() - began)
            cpu_times.append(time.process_time() - began_cpu)
            if (step + 1) % cfg.log_every == 0 or step + 1 == total:
                means = engine.all_mean({k: float(v) for k, v in result.metrics.items()})
                last_loss = means["loss_sum"] / max(means["targets"], 1e-9)
                if ctx.is_main:
                    self._log(writer, bar, step + 1, last_loss, result, times, cpu_times)
            if bar is not None:
                bar.update(1)
            at_end = step + 1 == total
            if at_end or (cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0):
                engine.save(checkpoints, {"stage": cfg.stage}, cfg.keep_checkpoints)
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        model_dir = self.out / "model"
        with engine.gathered():
            if ctx.is_main:
                model.save_pretrained(model_dir)
        ctx.barrier()
        return TrainResult(
            engine.step, model_dir, last_loss, _median(times), _median(cpu_times), ctx.is_main
        )

    def _log(
        self,
        writer: Any,
        bar: Any,
        step: int,
        loss: float,
        result: Any,
        times: list[float],
        cpu_times: list[float],
    ) -> None:
        """Scalars to TensorBoard and the bar (or the log): wall and CPU seconds per step over
        the last ten steps (CPU time, summed over threads, does not depend on what else the
        machine runs; a shared machine's wall time does)."""
        seconds = sum(times[-10:]) / len(times[-10:])
        cpu = sum(cpu_times[-10:]) / len(cpu_times[-10:])
        if writer is not None:
            writer.add_scalar("train/loss", loss, step)
            writer.add_scalar("train/lr", result.lr, step)
            writer.add_scalar("train/seconds_per_step", seconds, step)
            writer.add_scalar("train/cpu_seconds_per_step", cpu, step)
            if result.grad_norm is not None:
                writer.add_scalar("train/grad_norm", result.grad_norm, step)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{result.lr:.2e}", s_step=f"{seconds:.2f}")
        else:
            log.info(
                "step %d: loss %.4f lr %.2e %.2f s/step (%.2f CPU-s)",
                step,
                loss,
                result.lr,
                seconds,
                cpu,
            )

    def _record(
        self, model: MLLM, ctx: DistributedContext, engine: TrainEngine, total: int
    ) -> dict[str, Any]:
        return {
            "trainer": "mllm",
            "stage": self.cfg.stage,
            "world_size": ctx.world_size,
            "device": str(ctx.device),
            "backend": engine.backend,
            "zero_stage": engine.zero_stage,
            "precision": engine.precision,
            "accumulation": engine.accumulation,
            "total_steps": total,
            "model": model.summary(),
            "data": self.sample_check.summary(),
        }
