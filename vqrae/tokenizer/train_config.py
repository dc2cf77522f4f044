"""Typed training recipe for the tokenizer, read from YAML by :mod:`vqrae.training.recipes`.

A recipe file holds the common settings at top level (over an optional ``base:`` file) and
per-stage differences under ``stages: {1: {...}, 2: {...}}``; the stage chosen on the command
line is merged over the common part, then ``--set key.sub=value`` overrides over that. Unknown
keys are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vqrae.tokenizer.objective import ObjectiveConfig
from vqrae.training.recipes import build_config, load_recipe

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "load_train_config"]


@dataclass
class DataConfig:
    """Where images come from and how they are split and cropped.

    Attributes:
        train: image folder, ``save_to_disk`` dataset directory, or ``hf:NAME[:split]``.
        split: dataset split to train on (default: ``train`` when the dataset has splits).
        val_count: images held out for validation (a fixed split by ``split_seed``).
        split_seed: seed of the train/validation split.
        image_size: training resolution (``None``: the model's).
        max_scale: random resize of the shorter side in [size, size * max_scale] before the crop.
        num_workers: data-loading worker processes per training process.
    """

    train: str = ""
    split: str | None = None
    val_count: int = 50
    split_seed: int = 0
    image_size: int | None = None
    max_scale: float = 1.25
    num_workers: int = 2

    def __post_init__(self) -> None:
        if self.val_count < 0:
            raise ValueError(f"data.val_count must be >= 0, got {self.val_count}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay (per parameter group).

    Attributes:
        lr: peak learning rate of the decoder, projections and codebook map.
        min_lr: final learning rate of that group (cosine end point).
        encoder_lr: encoder learning rate when it is trained (stage 2); decays alike.
        betas, weight_decay: AdamW settings (no decay on biases, norms, position embeddings).
        warmup_steps: linear warm-up from 0.
        grad_clip: max global gradient norm (0 disables).
        disc_lr, disc_betas: discriminator optimizer.
    """

    lr: float = 4e-4
    min_lr: float = 1e-4
    encoder_lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    warmup_steps: int = 2000
    grad_clip: float = 1.0
    disc_lr: float = 4e-5
    disc_betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        self.disc_betas = tuple(self.disc_betas)
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(
                f"optim.lr / optim.min_lr must satisfy 0 <= min_lr <= lr, got {self.lr}, {self.min_lr}"
            )
        if self.warmup_steps < 0 or self.grad_clip < 0:
            raise ValueError("optim.warmup_steps and optim.grad_clip must be >= 0")


@dataclass
class TrainConfig:
    """One training run of one stage.

    Attributes:
        model: registered variant to build (ignored when ``init_from`` is set).
        model_overrides: VQRAEConfig fields that differ from the variant.
        init_from: a ``save_pretrained`` directory to start from (stage 2 starts from stage 1).
        stage: 1 (encoder frozen) or 2 (encoder trained, self-distillation on).
        steps: optimizer steps of this stage.
        batch_size: global batch per optimizer step (all processes, all accumulation steps).
        grad_accum: micro-batches per optimizer step.
        seed: seed of initialisation and of the data order / augmentation.
        ema_decay: EMA of the trained weights (0 disables); the exported model uses the EMA.
        precision: ``"auto"`` (bf16-mixed on CUDA, fp32 on CPU), ``"bf16-mixed"`` or ``"32"``.
        compile: wrap the model with ``torch.compile``.
        distributed: ``"ddp"`` or ``"fsdp"`` when launched with several processes.
        log_every, image_every, eval_every, checkpoint_every: intervals in steps (0 disables).
        keep_checkpoints: number of most recent checkpoints kept.
        eval_images: validation images evaluated at each evaluation (0: all of the split).
        calibration_images: training images whose encoder features initialise the quantizer at
            the start of a fresh run that does not start from ``init_from``; 0 disables.
        calibration: ``"data"``: the d->e projection centres the features and the frozen
            codebook is drawn from them (``VQRAE.calibrate_codebook``); ``"whiten"``: the
            projection whitens them and the codebook stays Gaussian
            (``VQRAE.calibrate_quantizer_input``).
        quantizer_input_lr_scale: learning-rate multiplier of the d->e projection.
        freeze_quantizer_input: keep the calibrated d->e projection fixed (SimVQ's W still
            adapts the codebook). Measured on the CPU demo: frozen keeps the code histogram
            wider (window usage ~30% against ~15%) but reconstructs worse (training L2 0.085
            at step 480 against 0.048 at step 390 with it trained), so the paper's trainable
            projection stays the default.
        freeze_quantizer: train the decoder alone on the codes of ``init_from``: the d->e
            projection, SimVQ's W and codebook stay fixed, so the tokens are unchanged (a
            decoder variant for another resolution that shares the encoder and the tokens);
            needs ``init_from``, no code restarts, stage 1.
        precompute_features: stage 1 only (the encoder is frozen): compute every training
            image's features once, on its centre crop, and train on those; training images are
            then not augmented. Cached in ``out/feature_cache.pt``.
        code_restart_every: every N steps, restart the codes picked fewer than
            ``code_restart_min_share`` x the mean count since the previous restart: their frozen
            codebook rows are re-drawn onto that step's quantizer inputs
            (:meth:`SimVQ.restart_codes`); 0 disables.
        code_restart_min_share: threshold of a dead code, as a share of the mean count.
        code_restart_until: last step at which codes may restart (``None``: 90% of ``steps``),
            so the decoder learns the last restarted codes before the run ends.
        trainable_encoder_blocks: stage 2: train only the last N encoder blocks and the final
            norm (0: the whole encoder); a compact export then stores only those.
    """

    model: str = "vqrae-dinov2-s"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    stage: int = 1
    steps: int = 100_000
    batch_size: int = 1024
    grad_accum: int = 1
    seed: int = 0
    ema_decay: float = 0.9999
    precision: Literal["auto", "bf16-mixed", "32"] = "auto"
    compile: bool = False
    distributed: Literal["ddp", "fsdp"] = "ddp"
    log_every: int = 10
    image_every: int = 1000
    eval_every: int = 5000
    eval_images: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    calibration_images: int = 256
    calibration: Literal["data", "whiten"] = "data"
    quantizer_input_lr_scale: float = 1.0
    freeze_quantizer_input: bool = False
    freeze_quantizer: bool = False
    precompute_features: bool = False
    trainable_encoder_blocks: int = 0
    code_restart_every: int = 0
    code_restart_min_share: float = 0.03
    code_restart_until: int | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.precision not in ("auto", "bf16-mixed", "32"):
            raise ValueError(
                f"precision must be 'auto', 'bf16-mixed' or '32', got {self.precision!r}"
            )
        if self.distributed not in ("ddp", "fsdp"):
            raise ValueError(f"distributed must be 'ddp' or 'fsdp', got {self.distributed!r}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.calibration not in ("data", "whiten"):
            raise ValueError(f"calibration must be 'data' or 'whiten', got {self.calibration!r}")
        if self.quantizer_input_lr_scale < 0 or self.trainable_encoder_blocks < 0:
            raise ValueError("quantizer_input_lr_scale and trainable_encoder_blocks must be >= 0")
        if self.code_restart_every < 0 or self.code_restart_min_share < 0:
            raise ValueError("code_restart_every and code_restart_min_share must be >= 0")
        if self.precompute_features and self.stage != 1:
            raise ValueError("precompute_features needs a frozen encoder: stage 1 only")
        if self.freeze_quantizer and (
            not self.init_from or self.code_restart_every or self.stage != 1
        ):
            raise ValueError(
                "freeze_quantizer trains a decoder on the codes of a trained model: it needs "
                "init_from, stage 1 and code_restart_every 0"
            )
        if not self.data.train:
            raise ValueError("data.train is required (an image folder or a dataset)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_train_config(
    path: str | os.PathLike, stage: int | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """Read a recipe (its bases, the chosen stage's section, ``--set`` overrides), validate."""
    path = Path(path)
    merged = load_recipe(path, stage=stage if stage is not None else None, overrides=overrides)
    merged.setdefault("stage", 1)
    train = merged.get("data", {}).get("train")
    if (
        isinstance(train, str)
        and train
        and not train.startswith("hf:")
        and not os.path.isabs(train)
    ):
        # Relative data paths are relative to the recipe's folder when they exist there.
        candidate = (path.parent / train).resolve()
        if candidate.exists() and not Path(train).exists():
            merged["data"]["train"] = str(candidate)
    return build_config(TrainConfig, merged)
