"""Two-stage VQRAE training: one entry point for one process or many (torchrun).

Stage 1 freezes the encoder and trains the d->e projection, the codebook map W, the e->d
projection and the decoder. Stage 2 unfreezes the encoder at its own learning rate and adds
self-distillation to a frozen copy of the original encoder. Distribution comes from the
launcher: under ``torchrun`` the model is wrapped in DDP (or FSDP), the data stream is split
across processes, and the global batch stays what the recipe says.

Resuming is exact: the data position and every augmentation are functions of the step (see
:mod:`vqrae.data.training`), and the checkpoint holds the weights, EMA, optimizers, the
discriminator and LeCam state, the RNG states and the counters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from vqrae.data.training import (
    StepSampler,
    TrainImageDataset,
    collate_images,
    open_collection,
    split_indices,
)
from vqrae.tokenizer.encoders import get_encoder_spec
from vqrae.tokenizer.feature_cache import (
    CachedFeatureDataset,
    CachedFeatures,
    collate_cached,
    load_or_build_cache,
)
from vqrae.tokenizer.model import VQRAE, VQRAEConfig, load_pretrained_encoder
from vqrae.tokenizer.objective import TokenizerObjective
from vqrae.tokenizer.registry import create_model
from vqrae.tokenizer.teacher import SharedPrefixTeacher, frozen_prefix_matches
from vqrae.tokenizer.train_config import TrainConfig
from vqrae.training.checkpoints import (
    find_latest,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from vqrae.training.ema import EMA
from vqrae.training.logs import open_tensorboard, progress_bar
from vqrae.training.run_dir import write_run_files
from vqrae.training.schedules import lr_factor
from vqrae.utils.distributed import DistributedContext
from vqrae.utils.runtime import autocast, default_precision

__all__ = ["TokenizerTrainer"]

log = logging.getLogger(__name__)


def _param_groups(model: VQRAE, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: (encoder | d->e projection | rest) x (decay | no decay); frozen parameters
    left out."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "main"
        if name.startswith("encoder."):
            part = "encoder"
        elif name.startswith("quant_proj."):
            part = "quant_proj"
        no_decay = param.ndim < 2 or name.endswith("pos_embed") or "token" in name
        groups.setdefault((part, no_decay), []).append(param)
    out = []
    for (part, no_decay), params in sorted(groups.items()):
        base = {
            "encoder": cfg.optim.encoder_lr,
            "quant_proj": cfg.optim.lr * cfg.quantizer_input_lr_scale,
        }.get(part, cfg.optim.lr)
        out.append(
            {
                "params": params,
                "base_lr": base,
                "lr": base,
                "weight_decay": 0.0 if no_decay else cfg.optim.weight_decay,
                "name": f"{part}{'-no-decay' if no_decay else ''}",
            }
        )
    return out


Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _grow(model: VQRAE, overrides: dict[str, Any], source: str) -> VQRAE:
    """A model of ``model``'s config with ``overrides`` that starts from ``model``'s weights.

    Overrides may only add weights (e.g. ``decoder_refine_channels``, more decoder blocks):
    every tensor of ``model`` must load, with its shape, into the new one; the added ones keep
    their fresh initialisation.
    """
    config = VQRAEConfig.from_dict({**model.config.to_dict(), **overrides})
    grown = VQRAE(config)
    try:
        missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    except RuntimeError as error:  # a shape mismatch
        raise ValueError(
            f"model_overrides {overrides} change the shape of weights in {source}: {error}"
        ) from None
    if unexpected:
        raise ValueError(
            f"model_overrides {overrides} drop weights of {source}: {', '.join(unexpected[:5])}"
        )
    log.info("init_from %s with %d new tensors: %s", source, len(missing), ", ".join(missing[:8]))
    return grown


def _to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, tuple):
        return tuple(t.to(device, non_blocking=True) for t in batch)
    return batch.to(device, non_blocking=True)


# ---------------------------------------------------------------------------- trainer
class TokenizerTrainer:
    """Trains one stage of VQRAE as described by a :class:`TrainConfig`.

    Args:
        config: the recipe (one stage).
        out_dir: run folder: ``checkpoints/``, ``model/`` (export), ``tb/``, ``samples/``,
            ``eval/``, ``config.yaml``, ``run.json``.
        resume: continue from the latest checkpoint in ``out_dir`` (error if there is none).
        context: the distributed context (default: from the environment).
        progress: show a progress bar on the main process.
    """

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        resume: bool = False,
        context: DistributedContext | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg = config
        self.out = Path(out_dir)
        self.ctx = context or DistributedContext.from_environment()
        self.device = self.ctx.device
        precision = (
            config.precision if config.precision != "auto" else default_precision(self.device)
        )
        self.precision = precision
        self.progress = progress
        self.step = 0
        self._skipped_before = 0  # unreadable images skipped by all processes before resuming
        self._skipped_here = 0  # ... and by this process since
        self._restart_mark: torch.Tensor | None = None  # usage counts at the last code restart

        torch.manual_seed(config.seed)
        self.model = self._build_model().to(self.device)
        self.model.quantizer.keep_last_input = config.code_restart_every > 0
        self._freeze_for_stage()
        self.collection = open_collection(config.data.train, split=config.data.split)
        self.train_indices, self.val_indices = split_indices(
            len(self.collection), config.data.val_count, config.data.split_seed
        )
        self.image_size = config.data.image_size or self.model.config.image_size
        self.feature_cache: CachedFeatures | None = None
        if config.precompute_features:
            self.feature_cache = load_or_build_cache(
                self.out / "feature_cache.pt",
                self.model,
                TrainImageDataset(self.collection, self.image_size, train=False),
                self.train_indices,
                self.device,
                self.precision,
                self.ctx,
            )
            self.train_indices = self.feature_cache.indices  # the readable ones
        if not resume and not config.init_from and config.calibration_images > 0:
            self._calibrate()  # before wrapping, the optimizer and the EMA copy
        teacher = self._build_teacher() if config.objective.distill_weight > 0 else None
        perceptual = None
        if config.objective.perceptual_weight > 0:
            from vqrae.eval.perceptual import load_lpips

            perceptual = load_lpips(self.device)
        torch.manual_seed(config.seed + 1)
        self.objective = TokenizerObjective(config.objective, perceptual, teacher).to(self.device)
        self.train_model = self._wrap(self.model)  # before the optimizer: FSDP swaps parameters
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, config), betas=config.optim.betas, fused=None
        )
        self.disc_optimizer = None
        if self.objective.discriminator is not None:
            self.disc_optimizer = torch.optim.AdamW(
                self.objective.discriminator.parameters(),
                lr=config.optim.disc_lr,
                betas=config.optim.disc_betas,
                weight_decay=config.optim.weight_decay,
            )
        self.ema = EMA(self.model, config.ema_decay) if config.ema_decay > 0 else None

        if resume:
            self._resume()
        self.out.mkdir(parents=True, exist_ok=True)
        if self.ctx.is_main:
            self._write_run_files()

    # ------------------------------------------------------------------ set-up
    def _build_model(self) -> VQRAE:
        if self.cfg.init_from:
            model = VQRAE.from_pretrained(self.cfg.init_from)
            if self.cfg.model_overrides:
                model = _grow(model, self.cfg.model_overrides, self.cfg.init_from)
            return model.train()
        return create_model(self.cfg.model, **self.cfg.model_overrides).train()

    @torch.no_grad()
    def _calibrate(self) -> None:
        """Initialise the quantizer from the first training images' features."""
        if self.feature_cache is not None:
            features = self.feature_cache.features[: self.cfg.calibration_images]
            self._apply_calibration(features.to(self.device).float())
            return
        dataset = TrainImageDataset(self.collection, self.image_size, train=False)
        indices = self.train_indices[: self.cfg.calibration_images]
        features = []
        for start in range(0, len(indices), 16):
            images = [dataset[i] for i in indices[start : start + 16]]
            images = [image for image in images if image is not None]
            if images:
                batch = torch.stack(images).to(self.device)
                with autocast(self.device, self.precision):
                    features.append(self.model.encode(batch).float())
        if not features:
            raise ValueError("calibration: none of the first training images could be read")
        self._apply_calibration(torch.cat(features))

    def _apply_calibration(self, features: torch.Tensor) -> None:
        if self.cfg.calibration == "data":
            self.model.calibrate_codebook(features)
        else:
            self.model.calibrate_quantizer_input(features)

    def _build_teacher(self) -> nn.Module:
        """The frozen original encoder: its pretrained weights, or for an encoder without
        pretrained weights the (seeded, hence reproducible) initial one. When stage 2 trains
        only the last blocks, it shares the student's frozen ones (:class:`SharedPrefixTeacher`).
        """
        student = self.model.encoder
        if get_encoder_spec(self.model.config.encoder).asset is not None:
            teacher = load_pretrained_encoder(self.model.config).to(self.device)
        else:
            import copy

            teacher = copy.deepcopy(student)
        trainable = self.cfg.trainable_encoder_blocks
        start = len(student.blocks) - trainable
        if self.cfg.stage != 2 or not trainable or start < 1:
            return teacher
        if not frozen_prefix_matches(student, teacher, start):
            log.info("stage-2 teacher runs in full: the student's frozen blocks differ from it")
            return teacher
        log.info("stage-2 teacher shares the student's %d frozen blocks", start)
        return SharedPrefixTeacher(teacher, student, start)

    def _freeze_for_stage(self) -> None:
        encoder = self.model.encoder
        encoder.requires_grad_(self.cfg.stage == 2)
        last = self.cfg.trainable_encoder_blocks
        if self.cfg.stage == 2 and last:
            encoder.requires_grad_(False)
            encoder.trainable_tail(last).requires_grad_(True)
        self.model.quant_proj.requires_grad_(
            not (self.cfg.freeze_quantizer_input or self.cfg.freeze_quantizer)
        )
        self.model.quantizer.requires_grad_(not self.cfg.freeze_quantizer)
        # A frozen encoder still needs its buffers; no dropout or norm statistics change.

    def _wrap(self, model: VQRAE) -> nn.Module:
        wrapped: nn.Module = model
        if self.ctx.enabled:
            if self.cfg.distributed == "fsdp":
                from torch.distributed.fsdp import fully_shard

                for block in [*model.decoder.blocks, *model.encoder.blocks]:
                    fully_shard(block)
                wrapped = fully_shard(model)
            else:
                from torch.nn.parallel import DistributedDataParallel

                device_ids = [self.device.index] if self.device.type == "cuda" else None
                wrapped = DistributedDataParallel(model, device_ids=device_ids)
        if self.cfg.compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def _write_run_files(self) -> None:
        record = {
            "world_size": self.ctx.world_size,
            "device": str(self.device),
            "precision": self.precision,
            "train_images": len(self.train_indices),
            "val_images": len(self.val_indices),
            "resumed_at_step": self.step,
        }
        write_run_files(self.out, self.cfg.to_dict(), record)

    # ------------------------------------------------------------------ data
    def _loader(self) -> DataLoader:
        if self.feature_cache is not None:
            return DataLoader(
                CachedFeatureDataset(self.feature_cache),
                batch_size=self.cfg.batch_size // self.cfg.grad_accum // self.ctx.world_size,
                sampler=self._sampler(),
                collate_fn=collate_cached,
                num_workers=0,
            )
        micro_total = self.cfg.batch_size // self.cfg.grad_accum
        sampler = self._sampler()
        dataset = TrainImageDataset(
            self.collection,
            self.image_size,
            train=True,
            max_scale=self.cfg.data.max_scale,
            pool=self.train_indices,
        )
        workers = self.cfg.data.num_workers
        return DataLoader(
            dataset,
            batch_size=micro_total // self.ctx.world_size,
            sampler=sampler,
            collate_fn=collate_images,
            num_workers=workers,
            persistent_workers=False,
            prefetch_factor=2 if workers > 0 else None,
        )

    def _sampler(self) -> StepSampler:
        return StepSampler(
            self.train_indices,
            global_batch=self.cfg.batch_size,
            accum=self.cfg.grad_accum,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            seed=self.cfg.seed,
            start_step=self.step,
        )

    # ------------------------------------------------------------------ checkpoints
    def _disc_state(self) -> dict[str, torch.Tensor]:
        state = {}
        for prefix, module in (
            ("discriminator.", self.objective.discriminator),
            ("lecam.", self.objective.lecam),
        ):
            if module is not None:
                state.update({prefix + k: v for k, v in module.state_dict().items()})
        return state

    def skipped_images(self) -> int:
        """Unreadable images skipped so far by all processes (collective: call on every rank)."""
        return self._skipped_before + self.ctx.sum_int(self._skipped_here)

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (collective; the main process writes)."""
        path = None
        skipped = self.skipped_images()
        tensors = {"model": self.full_model_state()}
        if self.ema is not None:
            tensors["ema"] = self.ema.state_dict()
        optimizer_state = self._optimizer_state()
        if self.ctx.is_main:
            disc = self._disc_state()
            if disc:
                tensors["discriminator"] = disc
            state = {
                "step": self.step,
                "optimizer": optimizer_state,
                "disc_optimizer": self.disc_optimizer.state_dict() if self.disc_optimizer else None,
                "usage_counts": self.model.quantizer.usage_counts.cpu(),
                "code_restart_mark": self._restart_mark,
                "skipped_images": skipped,
                "rng_torch": torch.get_rng_state(),
                "config": json.dumps(self.cfg.to_dict()),
            }
            path = save_checkpoint(self.out / "checkpoints", self.step, tensors, state)
            prune_checkpoints(self.out / "checkpoints", self.cfg.keep_checkpoints)
        self.ctx.barrier()
        return path

    def _resume(self) -> None:
        latest = find_latest(self.out / "checkpoints")
        if latest is None:
            raise ValueError(f"--resume: no checkpoint found under {self.out / 'checkpoints'}")
        tensors, state = load_checkpoint(latest)
        fsdp = self.ctx.enabled and self.cfg.distributed == "fsdp"
        if fsdp:
            from torch.distributed.checkpoint.state_dict import (
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            set_model_state_dict(self.model, tensors["model"], options=self._state_options())
            set_optimizer_state_dict(
                self.model, self.optimizer, state["optimizer"], options=self._state_options()
            )
        else:
            self.model.load_state_dict(tensors["model"], strict=True)
            self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(tensors["ema"])
        disc = tensors.get("discriminator", {})
        if self.objective.discriminator is not None:
            self.objective.discriminator.load_state_dict(
                {
                    k[len("discriminator.") :]: v
                    for k, v in disc.items()
                    if k.startswith("discriminator.")
                }
            )
            self.objective.lecam.load_state_dict(
                {k[len("lecam.") :]: v for k, v in disc.items() if k.startswith("lecam.")}
            )
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        self.model.quantizer.usage_counts.copy_(state["usage_counts"])
        mark = state.get("code_restart_mark")
        self._restart_mark = mark.to(self.device) if mark is not None else None
        self._skipped_before = int(state["skipped_images"])
        self.step = int(state["step"])
        torch.set_rng_state(state["rng_torch"])
        log.info("resumed from %s at step %d", latest, self.step)

    # ------------------------------------------------------------------ one step
    def _set_lr(self) -> None:
        cfg = self.cfg.optim
        factor_main = lr_factor(self.step, cfg.warmup_steps, self.cfg.steps, cfg.min_lr / cfg.lr)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor_main

    def _sync_disc_grads(self) -> None:
        if not self.ctx.enabled:
            return
        for param in self.objective.discriminator.parameters():
            if param.grad is not None:
                dist.all_reduce(param.grad)
                param.grad /= self.ctx.world_size

    def train_step(self, batches: list[Batch]) -> dict[str, torch.Tensor]:
        """One optimizer step over ``grad_accum`` micro-batches; returns averaged metrics
        (tensors: converting them is left to logging, so a step never waits on the device).

        A micro-batch is images (B, 3, H, W), or ``(images, features)`` with the frozen
        encoder's cached features (B, N, d)."""
        self._set_lr()
        accum = len(batches)
        sums: dict[str, torch.Tensor] = {}
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        gan = self.objective.gan_active(self.step)
        if self.objective.discriminator is not None:
            self.objective.discriminator.requires_grad_(False)
        for i, batch in enumerate(batches):
            images, features = batch if isinstance(batch, tuple) else (batch, None)
            sync = i == accum - 1 or not self.ctx.enabled or self.cfg.distributed != "ddp"
            no_sync = contextlib.nullcontext() if sync else self.train_model.no_sync()
            with no_sync:
                with autocast(self.device, self.precision):
                    out = self.objective.generator_loss(
                        self.train_model, images, self.step, features=features
                    )
                (out.loss / accum).backward()
            for key, value in out.metrics.items():
                sums[key] = sums.get(key, 0.0) + value / accum
            if gan:
                kept.append((images, out.recon))
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.cfg.optim.grad_clip > 0:
            sums["grad_norm"] = torch.nn.utils.clip_grad_norm_(
                params, self.cfg.optim.grad_clip
            ).detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        if gan:
            disc = self.objective.discriminator
            disc.requires_grad_(True)
            for images, recon in kept:
                with autocast(self.device, self.precision):
                    d_out = self.objective.discriminator_loss(images, recon, self.step)
                (d_out.loss / accum).backward()
                for key, value in d_out.metrics.items():
                    sums[key] = sums.get(key, 0.0) + value / accum
            self._sync_disc_grads()
            if self.cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(disc.parameters(), self.cfg.optim.grad_clip)
            self.disc_optimizer.step()
            self.disc_optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return sums

    def _restart_due(self) -> bool:
        cfg = self.cfg
        until = cfg.code_restart_until if cfg.code_restart_until is not None else 0.9 * cfg.steps
        return bool(cfg.code_restart_every) and (
            self.step % cfg.code_restart_every == 0 and self.step <= until
        )

    @torch.no_grad()
    def restart_dead_codes(self) -> int:
        """Move the codes picked fewer than ``code_restart_min_share`` x the mean count since the
        last restart onto this step's quantizer inputs (collective: call on every rank).

        Usage counts are all-reduced, so every process flags the same codes; the main process
        draws the replacements (seeded by the run seed and step) and broadcasts the codebook.
        """
        quantizer = self.model.quantizer
        counts = quantizer.usage_counts
        if self._restart_mark is None:
            self._restart_mark = torch.zeros_like(counts)
        window = counts - self._restart_mark  # (k,)
        self._restart_mark = counts.clone()
        mean = window.sum().float() / quantizer.codebook_size
        dead = window.float() < self.cfg.code_restart_min_share * mean
        moved = 0
        if self.ctx.is_main and quantizer.last_input is not None:
            generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
            moved = quantizer.restart_codes(dead, quantizer.last_input, generator)
        if self.ctx.enabled:
            dist.broadcast(quantizer.codebook, src=0)
            quantizer.codebook_changed()
        return moved

    # ------------------------------------------------------------------ eval / export
    def _state_options(self):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=True)

    def full_model_state(self) -> dict[str, torch.Tensor]:
        """The whole model's weights on CPU (gathered under FSDP: call on every process)."""
        if self.ctx.enabled and self.cfg.distributed == "fsdp":
            from torch.distributed.checkpoint.state_dict import get_model_state_dict

            return get_model_state_dict(self.model, options=self._state_options())
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def _optimizer_state(self) -> dict[str, Any]:
        if self.ctx.enabled and self.cfg.distributed == "fsdp":
            from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

            return get_optimizer_state_dict(
                self.model, self.optimizer, options=self._state_options()
            )
        return self.optimizer.state_dict()

    def eval_model(self) -> VQRAE | None:
        """An unsharded copy of the model carrying the EMA weights (or the raw ones), in eval
        mode, on the main process (``None`` elsewhere). Collective: call on every process."""
        state = self.full_model_state()
        ema = self.ema.state_dict() if self.ema is not None else {}
        if not self.ctx.is_main:
            return None
        state.update(ema)
        with torch.device("meta"):
            model = VQRAE(self.model.config)
        model.load_state_dict(state, strict=True, assign=True)
        model.quantizer.usage_counts = torch.zeros_like(
            state["quantizer.codebook"][:, 0], dtype=torch.long
        )
        return model.to(self.device).eval()

    def export(self, dtype: torch.dtype | None = None) -> Path:
        """Write the (EMA) model as a ``save_pretrained`` directory ``out/model``."""
        path = self.out / "model"
        model = self.eval_model()  # collective
        if model is not None:
            model.save_pretrained(path, dtype=dtype)
        self.ctx.barrier()
        return path

    def validate(self, writer: Any | None = None) -> dict[str, float] | None:
        """Run the reconstruction evaluation on the validation split (main process)."""
        if not self.val_indices:
            return None
        model = self.eval_model()  # collective
        if model is None:
            return None
        from vqrae.eval.recon import evaluate_reconstruction, write_metrics
        from vqrae.eval.report import write_recon_report

        indices = self.val_indices[: self.cfg.eval_images or None]
        records = (self.collection.load(i) for i in indices)
        evaluation = evaluate_reconstruction(
            model,
            records,
            size=self.image_size,
            device=self.device,
            progress=False,
            model_name=f"{self.cfg.model} stage {self.cfg.stage} step {self.step}",
        )
        out_dir = self.out / "eval" / f"step_{self.step:08d}"
        write_metrics(evaluation, out_dir)
        write_recon_report(evaluation, out_dir)
        result = evaluation.metrics
        if writer is not None:
            for key, value in result.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    writer.add_scalar(f"val/{key}", value, self.step)
        return result

    def _log_images(self, writer: Any | None, images: torch.Tensor) -> None:
        from vqrae.data.images import save_image

        model = self.eval_model()  # collective
        if model is None:
            return
        with torch.no_grad():
            recon = model.reconstruct(images[:8])
        grid = torch.cat(
            [torch.cat(list(images[:8].cpu()), dim=-1), torch.cat(list(recon.cpu()), dim=-1)],
            dim=-2,
        )
        save_image(grid, self.out / "samples" / f"step_{self.step:08d}.png")
        if writer is not None:
            writer.add_image("reconstructions", grid, self.step)

    # ------------------------------------------------------------------ loop
    def fit(self) -> Path:
        """Train until ``config.steps``; returns the exported model directory."""
        cfg = self.cfg
        writer = open_tensorboard(self.out / "tb", self.ctx.is_main)
        loader = iter(self._loader())
        bar = progress_bar(
            cfg.steps, self.step, f"stage {cfg.stage}", self.progress and self.ctx.is_main
        )
        window: list[dict[str, torch.Tensor]] = []
        usage_mark = self.model.quantizer.usage_counts.clone()
        start = time.perf_counter()
        while self.step < cfg.steps:
            batches = []
            for _ in range(cfg.grad_accum):
                batch, skipped = next(loader)
                self._skipped_here += skipped
                batches.append(_to_device(batch, self.device))
            metrics = self.train_step(batches)
            if self._restart_due():
                metrics["codes_restarted"] = torch.tensor(float(self.restart_dead_codes()))
            window.append(metrics)
            if bar is not None:
                bar.update(1)
            if cfg.log_every and self.step % cfg.log_every == 0:
                keys = sorted({k for m in window for k in m})
                averaged = self.ctx.mean(
                    {k: float(np.mean([float(m.get(k, 0.0)) for m in window])) for k in keys}
                )
                counts = self.model.quantizer.usage_counts
                averaged["usage"] = float(((counts - usage_mark) > 0).float().mean())  # window
                usage_mark = counts.clone()
                skipped = self.skipped_images()  # collective: every process is here
                averaged["imgs_per_s"] = (
                    cfg.batch_size * len(window) / max(time.perf_counter() - start, 1e-9)
                )
                window, start = [], time.perf_counter()
                if bar is not None:
                    bar.set_postfix(
                        {
                            k: f"{averaged[k]:.4g}"
                            for k in ("loss", "l2", "lpips", "usage")
                            if k in averaged
                        }
                    )
                if writer is not None:
                    for key, value in averaged.items():
                        writer.add_scalar(f"train/{key}", value, self.step)
                    writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
                    writer.add_scalar("train/skipped_images", skipped, self.step)
            if cfg.image_every and self.step % cfg.image_every == 0:
                first = batches[0]
                self._log_images(writer, first[0] if isinstance(first, tuple) else first)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save()
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                self.validate(writer)
                self.ctx.barrier()
        if bar is not None:
            bar.close()
        if find_latest(self.out / "checkpoints") is None or self.step % max(
            cfg.checkpoint_every, 1
        ):
            self.save()
        path = self.export()
        if writer is not None:
            writer.close()
        return path
