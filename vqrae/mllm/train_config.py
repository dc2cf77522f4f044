"""Typed recipe of an understanding-model training stage (LLaVA-1.5's two stages).

Stage 1 (projector pretraining): the encoder and the LM frozen, the projector trained on
image-caption pairs with the ``plain`` template, lr 1e-3, batch 256, one epoch. Stage 2
(instruction tuning): the projector and the LM (a LoRA adapter, or every weight) trained on
conversations with the LM's chat template, lr 2e-5, batch 128, one epoch, starting from the
stage-1 model (``init_from``). Warm-up 3% of the steps, cosine decay to 0, no weight decay, as
LLaVA's scripts run them.

The recipe file holds the common settings at top level (over an optional ``base:``) and the
per-stage differences under ``stages:``; ``--set key.sub=value`` overrides (see
:mod:`vqrae.training.recipes`). Relative data paths are read relative to the recipe's folder
when they exist there.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vqrae.mllm.config import MLLMConfig
from vqrae.mllm.language import LoRASettings
from vqrae.mllm.prompts import Template
from vqrae.mllm.sources import SourceConfig
from vqrae.training.recipes import build_config, load_recipe

__all__ = ["DataConfig", "MLLMTrainConfig", "OptimConfig", "load_mllm_train_config"]

Tune = Literal["projector", "lora", "full"]


@dataclass
class DataConfig:
    """What the stage trains on.

    Attributes:
        sources: the data sources (see :class:`~vqrae.mllm.sources.SourceConfig`).
        max_length: truncate longer samples (LLaVA-1.5: 2048); the image must fit.
        cache_features: compute each image's (frozen) features once and train on those.
        cache_dir: where the feature cache lives (default ``OUT/feature_cache``); point both
            stages at one folder to share it.
        encode_batch_size: images per encoder pass when building the cache.
        num_workers: data-loading processes (0: in the training process).
    """

    sources: list[SourceConfig] = field(default_factory=list)
    max_length: int = 2048
    cache_features: bool = True
    cache_dir: str | None = None
    encode_batch_size: int = 16
    num_workers: int = 0

    def __post_init__(self) -> None:
        self.sources = [
            s if isinstance(s, SourceConfig) else build_config(SourceConfig, s, "data.sources.")
            for s in self.sources
        ]
        if self.max_length < 2 or self.encode_batch_size < 1 or self.num_workers < 0:
            raise ValueError("data.max_length >= 2, encode_batch_size >= 1, num_workers >= 0")


@dataclass
class OptimConfig:
    """AdamW, linear warm-up, cosine decay (LLaVA's schedule).

    Attributes:
        lr: peak learning rate of everything trained (the projector, and the LoRA adapter or
            the LM's weights).
        min_lr: the cosine schedule's end point.
        betas, eps, weight_decay: AdamW (no decay on biases and norms).
        warmup_ratio: warm-up length as a share of the run's steps (LLaVA: 0.03).
        grad_clip: max global gradient norm (0 disables).
    """

    lr: float = 2e-5
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass
class MLLMTrainConfig:
    """One training stage of an understanding model.

    Attributes:
        model: the architecture (tokenizer, LM, projector, pooling, template).
        init_from: a model folder to start from (stage 2: the stage-1 model); its architecture
            replaces ``model``'s.
        stage: 1 (projector pretraining) or 2 (instruction tuning).
        tune: what trains besides the projector: ``projector`` (nothing else; stage 1),
            ``lora`` (a peft LoRA adapter on the LM) or ``full`` (every LM weight).
        lora: the adapter's settings (``tune: lora``).
        template: ``plain`` (LLaVA's stage 1) or ``chat`` (the LM's chat template); default by
            stage.
        epochs: passes over the data (the last step's batch wraps around).
        steps: optimizer steps (overrides ``epochs``; a smoke run).
        batch_size: the global batch (all processes, all micro-batches).
        micro_batch_size: samples per forward pass on one process.
        seed: the projector's initialisation and the data order.
        precision: ``auto`` (fp32 on CPU; bf16 on CUDA: DeepSpeed's bf16 or bf16 autocast),
            ``32``, ``bf16-mixed`` (plain PyTorch) or ``bf16`` (DeepSpeed).
        deepspeed: a DeepSpeed JSON file (``configs/deepspeed/zero3.json``, ...); ``None``
            trains with plain PyTorch (DDP under torchrun).
        gradient_checkpointing: recompute the LM's activations in the backward pass.
        log_every, checkpoint_every: intervals in steps (0 disables checkpoints but the last).
        keep_checkpoints: how many recent checkpoints are kept.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    model: MLLMConfig = field(default_factory=MLLMConfig)
    init_from: str | None = None
    stage: int = 1
    tune: Tune = "projector"
    lora: LoRASettings = field(default_factory=LoRASettings)
    template: Template | None = None
    epochs: float = 1.0
    steps: int | None = None
    batch_size: int = 256
    micro_batch_size: int = 16
    seed: int = 0
    precision: Literal["auto", "32", "bf16-mixed", "bf16"] = "auto"
    deepspeed: str | None = None
    gradient_checkpointing: bool = False
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.tune not in ("projector", "lora", "full"):
            raise ValueError(f"tune must be projector, lora or full, got {self.tune!r}")
        if self.stage == 1 and self.tune != "projector":
            raise ValueError("stage 1 trains the projector only (tune: projector)")
        if self.template is None:
            self.template = "plain" if self.stage == 1 else "chat"
        if self.template not in ("plain", "chat"):
            raise ValueError(f"template must be plain or chat, got {self.template!r}")
        if self.epochs <= 0 or (self.steps is not None and self.steps < 1):
            raise ValueError("epochs must be > 0 and steps >= 1 (or null)")
        if self.batch_size < 1 or self.micro_batch_size < 1:
            raise ValueError("batch_size and micro_batch_size must be >= 1")
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of micro_batch_size "
                f"{self.micro_batch_size}"
            )
        if self.keep_checkpoints < 1 or self.log_every < 1 or self.checkpoint_every < 0:
            raise ValueError("keep_checkpoints, log_every >= 1; checkpoint_every >= 0")
        if not self.data.sources:
            raise ValueError("data.sources is empty: name at least one data source")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _relative_to(recipe: Path, value: str | None) -> str | None:
    """``value`` relative to the recipe's folder when it exists there (and not as given)."""
    if not value or os.path.isabs(value) or Path(value).exists():
        return value
    candidate = (recipe.parent / value).resolve()
    return str(candidate) if candidate.exists() else value


def load_mllm_train_config(
    path: str | os.PathLike[str], stage: int | None = None, overrides: list[str] | None = None
) -> MLLMTrainConfig:
    """Read a recipe (its bases, the chosen stage's section, ``--set`` overrides) and validate.

    Raises:
        ValueError: an unknown key, a bad value, or a missing recipe file.
    """
    path = Path(path)
    merged = load_recipe(path, stage=stage, overrides=overrides)
    merged.setdefault("stage", 1)
    for source in merged.get("data", {}).get("sources", []) or []:
        if isinstance(source, dict):
            for key in ("path", "image_folder"):
                if key in source:
                    source[key] = _relative_to(path, source[key])
    if isinstance(merged.get("deepspeed"), str):
        merged["deepspeed"] = _relative_to(path, merged["deepspeed"])
    return build_config(MLLMTrainConfig, merged)
