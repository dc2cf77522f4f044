"""Named VQRAE variants: ``create_model("vqrae-dinov2-s")``, ``list_models()``.

A variant is a :class:`VQRAEConfig` preset. ``create_model`` builds it to train: the encoder's
pretrained weights through :mod:`vqrae.assets`, the quantizer and decoder fresh (unless a
checkpoint directory is given). Trained tokenizers are catalogue entries that
:meth:`VQRAE.from_pretrained` loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from vqrae.tokenizer.encoders import pretrained_encoder_kwargs
from vqrae.tokenizer.model import VQRAE, VQRAEConfig

__all__ = [
    "ModelVariant",
    "create_model",
    "get_variant",
    "list_models",
    "register_model",
]


@dataclass(frozen=True)
class ModelVariant:
    """A registered preset: config overrides on top of :class:`VQRAEConfig` defaults."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_VARIANTS: dict[str, ModelVariant] = {}


def register_model(variant: ModelVariant) -> ModelVariant:
    """Add a variant to the registry (names are unique)."""
    if variant.name in _VARIANTS:
        raise ValueError(f"model {variant.name!r} is already registered")
    VQRAEConfig(**variant.config)  # validate eagerly
    _VARIANTS[variant.name] = variant
    return variant


# Paper scale (arXiv 2511.23386): k = 16384 codes of dimension e = 1536, decoder mirrors encoder.
register_model(
    ModelVariant(
        "vqrae-siglip2-so400m-256",
        {"encoder": "siglip2-so400m-p16-256", "image_size": 256},
        "SigLIP2-so400m/16 encoder at 256 px, 16384 x 1536 SimVQ, mirrored ViT decoder",
    )
)
register_model(
    ModelVariant(
        "vqrae-siglip2-so400m-512",
        {"encoder": "siglip2-so400m-p16-512", "image_size": 512},
        "SigLIP2-so400m/16 encoder at 512 px, 16384 x 1536 SimVQ, mirrored ViT decoder",
    )
)
register_model(
    ModelVariant(
        "vqrae-internvit-300m-448",
        {"encoder": "internvit-300m-448", "image_size": 448},
        "InternViT-300M/14 encoder at 448 px, 16384 x 1536 SimVQ, mirrored ViT decoder",
    )
)
# Runs here: the offline DINOv2 ViT-S/14 (d = 384).
register_model(
    ModelVariant(
        "vqrae-dinov2-s",
        {"encoder": "dinov2-small", "image_size": 224},
        "DINOv2 ViT-S/14 encoder at 224 px, 16384 x 1536 SimVQ, mirrored 12-block decoder",
    )
)
register_model(
    ModelVariant(
        "vqrae-dinov2-s-demo",
        {
            "encoder": "dinov2-small",
            "image_size": 224,
            "codebook_size": 2048,
            "codebook_dim": 384,
            "encoder_layer": -5,  # block 8 of 12: keeps colour and texture (BENCHMARKS.md)
            "encoder_scale": 3,  # 48x48 codes at 224 px (BENCHMARKS.md, code grid vs thumbnail)
            "decoder_merge": 3,
            "decoder_depth": 4,
            "decoder_refine_channels": 16,
        },
        "CPU-sized DINOv2 ViT-S/14 tokenizer: block-8 tokens, 48x48 codes at 224 px (encoder "
        "reads 672 px), 2048 x 384 SimVQ, 4-block decoder on 3x3-merged tokens, conv refiner",
    )
)
# Tiny random variants for tests.
register_model(
    ModelVariant(
        "vqrae-test-tiny",
        {"encoder": "tiny-test", "image_size": 56, "codebook_size": 64, "codebook_dim": 48},
        "random 2-block d=32 encoder, 64 x 48 codebook (tests only)",
    )
)


def list_models() -> list[str]:
    """Names of the registered variants."""
    return sorted(_VARIANTS)


def get_variant(name: str) -> ModelVariant:
    """The registered variant ``name``; raises ``ValueError`` listing the known names."""
    try:
        return _VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None


def create_model(
    name: str,
    pretrained_encoder: bool = True,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> VQRAE:
    """Build a registered VQRAE variant.

    Args:
        name: a name from :func:`list_models`.
        pretrained_encoder: load the encoder's pretrained weights through :mod:`vqrae.assets`
            (ignored for encoders without weights and on the meta device). The quantizer and
            decoder always start untrained: this builds a model to train. Trained tokenizers
            load with :meth:`VQRAE.from_pretrained`.
        checkpoint: a ``save_pretrained`` directory whose weights replace everything.
        device: where to build the model; ``"meta"`` builds it without memory (shape checks of
            paper-scale variants).
        **overrides: fields of :class:`VQRAEConfig` that differ from the preset.
    """
    variant = get_variant(name)
    config = VQRAEConfig(**{**variant.config, **overrides})
    if checkpoint is not None:
        model = VQRAE.from_directory(checkpoint, device=device)
        if model.config.to_dict() != config.to_dict():
            raise ValueError(
                f"checkpoint {checkpoint} was saved with a different config than {name!r}"
            )
        return model
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            return VQRAE(config)
    kwargs = pretrained_encoder_kwargs(config.encoder) if pretrained_encoder else {}
    model = VQRAE(
        config,
        encoder_state_dict=kwargs.get("state_dict"),
        encoder_mean=kwargs.get("mean"),
        encoder_std=kwargs.get("std"),
    )
    return model.to(device) if device is not None else model
