"""Named VQRAE variants: ``create_model("vqrae-dinov2-s")``, ``list_models()``.

A variant is a :class:`VQRAEConfig` preset. ``create_model`` builds it and, for a pretrained
encoder, loads the encoder's weights through :mod:`vqrae.assets` (the quantizer and decoder start
fresh unless a checkpoint directory is given).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vqrae.tokenizer.encoders import VFMEncoder, get_encoder_spec
from vqrae.tokenizer.model import VQRAE, VQRAEConfig

__all__ = [
    "ModelVariant",
    "create_model",
    "get_variant",
    "list_models",
    "load_pretrained_encoder",
    "pretrained_encoder_kwargs",
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


CHECKPOINTS_DIR = Path(__file__).resolve().parents[2] / "checkpoints"


def trained_checkpoint(name: str) -> Path | None:
    """The trained ``save_pretrained`` directory shipped for variant ``name``, if any.

    Trained tokenizers live in the repository's ``checkpoints/<name>/`` (``VQRAE_CHECKPOINTS``
    names another folder); :meth:`VQRAE.from_pretrained` prefers them to an untrained decoder.
    """
    root = Path(os.environ.get("VQRAE_CHECKPOINTS", CHECKPOINTS_DIR))
    path = root / name
    return path if (path / "config.json").is_file() else None


def create_model(
    name: str,
    pretrained: bool = True,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> VQRAE:
    """Build a registered VQRAE variant.

    Args:
        name: a name from :func:`list_models`.
        pretrained: load the encoder's pretrained weights through :mod:`vqrae.assets`
            (ignored for encoders without weights and on the meta device).
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
    kwargs = pretrained_encoder_kwargs(config.encoder) if pretrained else {}
    model = VQRAE(config, **kwargs)
    return model.to(device) if device is not None else model


def pretrained_encoder_kwargs(encoder: str) -> dict[str, Any]:
    """Weights and normalisation of a registered encoder, through :mod:`vqrae.assets`.

    Returns the ``encoder_state_dict`` / ``encoder_mean`` / ``encoder_std`` keyword arguments
    of :class:`VQRAE` (empty for encoders without pretrained weights).
    """
    spec = get_encoder_spec(encoder)
    if spec.asset is None:
        return {}
    from vqrae import assets

    meta = assets.load_config(spec.asset)
    return {
        "encoder_state_dict": assets.load_state_dict(spec.asset),
        "encoder_mean": tuple(meta["mean"]) if "mean" in meta else None,
        "encoder_std": tuple(meta["std"]) if "std" in meta else None,
    }


def load_pretrained_encoder(config: VQRAEConfig) -> VFMEncoder:
    """The encoder of ``config`` with its original pretrained weights (the stage-2 teacher)."""
    kwargs = pretrained_encoder_kwargs(config.encoder)
    return VFMEncoder(
        get_encoder_spec(config.encoder),
        image_size=config.image_size * config.encoder_scale,
        layer=config.encoder_layer,
        final_norm=config.encoder_final_norm,
        state_dict=kwargs.get("encoder_state_dict"),
        mean=kwargs.get("encoder_mean"),
        std=kwargs.get("encoder_std"),
    )
