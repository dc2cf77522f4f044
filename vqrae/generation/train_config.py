"""The typed recipe of ``vqrae train-generator``, read from YAML by :mod:`vqrae.training.recipes`.

A recipe names the language model (a pretrained one to expand, or an architecture to build
from scratch over a named tokenizer), the code data sets, the engine (backend, DeepSpeed file,
precision, global and micro batch), the optimiser and the run's rhythm (logging, checkpoints,
sample grids). ``base:`` files share settings; ``--set key.sub=value`` overrides; unknown keys
are errors that name the key. See ``configs/generation/``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vqrae.training.engine import EngineConfig, OptimizerConfig
from vqrae.training.recipes import build_config, load_recipe

__all__ = [
    "DataConfig",
    "GeneratorTrainConfig",
    "LoraConfig",
    "ModelConfig",
    "SamplesConfig",
    "load_generator_config",
]

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraConfig:
    """LoRA adapters through peft (the expanded vocabulary's rows train in full).

    Attributes:
        enabled: train adapters instead of the whole model.
        rank, alpha, dropout: LoRA's r, alpha and dropout.
        target_modules: the linear layers that get adapters.
    """

    enabled: bool = False
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("model.lora: rank >= 1, alpha > 0 and dropout in [0, 1) needed")


@dataclass
class ModelConfig:
    """The language model to expand by the codes.

    Attributes:
        base: a pretrained causal LM: catalogue name (``qwen3-0.6b``), Hub id or folder.
        architecture: instead of ``base``, a transformers config to build from scratch
            (``model_type`` and its fields, e.g. a small Qwen3); ``vocab_size`` and the special
            token ids come from ``text_tokenizer``.
        text_tokenizer: the tokenizer of an ``architecture`` model (catalogue name, Hub id or
            folder).
        trim_vocabulary: an ``architecture`` model's text vocabulary is ``text_tokenizer``
            trimmed to the tokens of the training captions and their byte pieces
            (:mod:`vqrae.generation.vocab_trim`): a small model is not mostly embedding rows.
        num_codes: the codebook size the recipe expects of the data's tokenizer (checked).
        init: how the new embedding rows start: ``"mean"`` or ``"codebook"``
            (:func:`vqrae.llm.expand_vocabulary`).
        head: ``"full"`` (softmax over the whole vocabulary) or ``"visual"`` (over the codes).
        attn: the attention kernel (``"auto"``: flash-attention 2 on CUDA when installed).
        gradient_checkpointing: recompute activations in the backward pass (saves memory).
        lora: optional LoRA adapters.
    """

    base: str | None = None
    architecture: dict[str, Any] = field(default_factory=dict)
    text_tokenizer: str | None = None
    trim_vocabulary: bool = False
    num_codes: int | None = None
    init: Literal["mean", "codebook"] = "mean"
    head: Literal["full", "visual"] = "full"
    attn: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        if bool(self.base) == bool(self.architecture):
            raise ValueError("model: give exactly one of model.base and model.architecture")
        if self.architecture and not self.text_tokenizer:
            raise ValueError("model.architecture needs model.text_tokenizer")
        if self.trim_vocabulary and not self.architecture:
            raise ValueError("model.trim_vocabulary applies to model.architecture (from scratch)")
        if self.architecture and "model_type" not in self.architecture:
            raise ValueError("model.architecture needs a model_type (e.g. qwen3)")
        if self.head not in ("full", "visual"):
            raise ValueError(f"model.head must be 'full' or 'visual', got {self.head!r}")
        if self.init not in ("mean", "codebook"):
            raise ValueError(f"model.init must be 'mean' or 'codebook', got {self.init!r}")


@dataclass
class DataConfig:
    """The code data sets (``vqrae generation prepare`` folders) and the caption dropout.

    Attributes:
        train: one folder or a list (their rows concatenated; one tokenizer and grid).
        caption_dropout: the share of samples trained with the empty caption (the
            unconditional prompt of classifier-free guidance; LlamaGen: 0.1).
        num_workers: data-loading worker processes per training process.
    """

    train: list[str] = field(default_factory=list)
    caption_dropout: float = 0.1
    num_workers: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.train, str):
            self.train = [self.train]
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"data.caption_dropout must lie in [0, 1), got {self.caption_dropout}")
        if self.num_workers < 0:
            raise ValueError("data.num_workers must be >= 0")


@dataclass
class SamplesConfig:
    """Sample grids drawn during training (main process), with their prompts.

    Attributes:
        every: draw every this many steps (0: never).
        prompts: the prompts, one grid column each.
        per_prompt: images per prompt (grid rows).
        cfg, temperature, top_k: the draw.
        seed: image ``k`` uses ``seed + k``.
    """

    every: int = 0
    prompts: list[str] = field(default_factory=list)
    per_prompt: int = 2
    cfg: float = 4.0
    temperature: float = 1.0
    top_k: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.every < 0 or self.per_prompt < 1:
            raise ValueError("samples.every must be >= 0 and samples.per_prompt >= 1")
        if self.every and not self.prompts:
            raise ValueError("samples.every is set but samples.prompts is empty")


@dataclass
class GeneratorTrainConfig:
    """A ``vqrae train-generator`` recipe.

    Attributes:
        model: the language model and how it is expanded and trained.
        data: the code data sets.
        engine: backend (torch / DeepSpeed), DeepSpeed JSON, precision, global and micro batch.
        optim: AdamW and the learning-rate schedule.
        steps: optimiser steps.
        max_length: the longest sequence (prompt + H*W + 2); prompts are cut to fit.
        seed: seeds the model's initialisation, the data order and the caption draws.
        log_every: steps between logged (averaged) metrics.
        checkpoint_every: steps between checkpoints (the last one is always written).
        keep_checkpoints: checkpoints kept.
        samples: sample grids during training.
        export_dtype: the dtype of the exported ``model/`` weights (``float16`` halves a
            shipped folder; loading casts back to the runtime policy's dtype).
    """

    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)
    steps: int = 1000
    max_length: int = 1536
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    export_dtype: Literal["float32", "float16", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if self.export_dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(
                f"export_dtype must be float32, float16 or bfloat16, got {self.export_dtype!r}"
            )
        if self.steps < 1 or self.max_length < 4:
            raise ValueError("steps must be >= 1 and max_length >= 4")
        if self.log_every < 1 or self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ValueError("log_every >= 1, checkpoint_every >= 0, keep_checkpoints >= 1")
        if not self.data.train:
            raise ValueError("data.train names no code data set")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _relative_to(path: Path, value: str) -> str:
    """A relative data path resolved against the recipe's folder when it exists only there."""
    if os.path.isabs(value) or Path(value).exists():
        return value
    candidate = (path.parent / value).resolve()
    return str(candidate) if candidate.exists() else value


def load_generator_config(
    path: str | os.PathLike[str], overrides: list[str] | None = None
) -> GeneratorTrainConfig:
    """Read a recipe (its ``base:`` chain and ``--set`` overrides) and validate it."""
    path = Path(path)
    merged = load_recipe(path, overrides=overrides)
    data = merged.get("data", {})
    if isinstance(data.get("train"), str):
        data["train"] = [data["train"]]
    if isinstance(data.get("train"), list):
        data["train"] = [_relative_to(path, str(p)) for p in data["train"]]
    engine = merged.get("engine", {})
    if isinstance(engine.get("deepspeed"), str):
        engine["deepspeed"] = _relative_to(path, engine["deepspeed"])
    return build_config(GeneratorTrainConfig, merged)
