"""Text to images in one call: :func:`generate`.

    from vqrae.generation import generate
    images = generate(["a photo of a red circle"], n=4, cfg=4.0, seed=0)   # 4 PIL images

The model is a generator folder (``ImageGenerator.save_pretrained``, e.g. a training run's
``model/``), a catalogue name (default :data:`DEMO_GENERATOR`, the demo generator the package
ships), or a loaded :class:`ImageGenerator`. Image ``k`` of every prompt is drawn with seed
``seed + k``: the same prompt, seed and ``k`` give the same image in any batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vqrae.generation.model import ImageGenerator
from vqrae.generation.sampler import DEFAULT_CFG, CacheKind, SamplingConfig, sample_codes

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DEMO_GENERATOR",
    "GeneratorUnavailableError",
    "PromptImages",
    "find_generator",
    "generate",
    "generate_for_prompts",
    "load_generator",
]

log = logging.getLogger(__name__)

DEMO_GENERATOR = "vqrae-generator-demo"
DEMO_RECIPE = "configs/generation/cpu-demo.yaml"


class GeneratorUnavailableError(ValueError):
    """The generator asked for cannot be found or is not shipped (one line for the user)."""


def find_generator(model: str | os.PathLike[str] | None = None) -> Path:
    """The folder of a generator given as a folder or a catalogue name (default
    :data:`DEMO_GENERATOR`), found without loading it.

    Raises:
        GeneratorUnavailableError: a missing folder, an unknown name, or the demo generator
            when this installation does not ship it (the message says how to train one).
    """
    name = os.fspath(model) if model is not None else DEMO_GENERATOR
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    from vqrae import assets

    known = {s.name for s in assets.list_assets()}
    if name not in known:
        raise GeneratorUnavailableError(
            f"--model {name}: no such generator folder, and not a catalogue name (the demo "
            f"generator is {DEMO_GENERATOR!r})"
        )
    try:
        return assets.resolve(name)
    except assets.AssetError:
        if name == DEMO_GENERATOR:
            raise GeneratorUnavailableError(
                f"the demo generator {DEMO_GENERATOR!r} is not shipped yet: train one with "
                f"`vqrae train-generator --config {DEMO_RECIPE} --out runs/generator` and pass "
                "--model runs/generator/model"
            ) from None
        raise


def load_generator(
    model: str | os.PathLike[str] | ImageGenerator | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> ImageGenerator:
    """A generator from a folder, a catalogue name (default :data:`DEMO_GENERATOR`) or as is.

    Raises:
        GeneratorUnavailableError: as :func:`find_generator`, or a folder missing a file.
    """
    if isinstance(model, ImageGenerator):
        return model
    folder = find_generator(model)
    try:
        return ImageGenerator.from_pretrained(folder, device=device, precision=precision)
    except FileNotFoundError as exc:
        raise GeneratorUnavailableError(str(exc)) from None


@dataclass(frozen=True)
class PromptImages:
    """The images drawn for one prompt, with their seeds, and whether the prompt was cut."""

    prompt: str
    images: list[Image.Image]
    seeds: list[int]
    truncated: bool


def generate_for_prompts(
    generator: ImageGenerator,
    prompts: Sequence[str],
    n: int = 4,
    seed: int = 0,
    sampling: SamplingConfig | None = None,
    batch_size: int = 8,
    warn_truncated: bool = True,
) -> list[PromptImages]:
    """``n`` images for each prompt, grouped by prompt (see :func:`generate`).

    Over-long prompts are cut to the generator's trained length, with a logged warning
    (``warn_truncated=False``: only :attr:`PromptImages.truncated` says so).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sampling = sampling or SamplingConfig()
    encoded = []
    for text in prompts:
        prompt = generator.encode(text)
        if prompt.truncated and warn_truncated:
            log.warning(
                "prompt cut to its first %d tokens (the generator's length): %.60s...",
                generator.config.max_prompt_tokens,
                text,
            )
        encoded.append(prompt)
    jobs = [(i, k) for i in range(len(prompts)) for k in range(n)]  # (prompt, sample)
    tokenizer = generator.vqrae()
    grid = generator.config.grid
    drawn: dict[tuple[int, int], Image.Image] = {}
    from vqrae.data.images import tensor_to_pil

    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        codes = sample_codes(
            generator.lm,
            generator.vocab,
            [encoded[i].ids for i, _ in chunk],
            generator.unconditional(),
            generator.config.num_image_tokens,
            sampling,
            seeds=[seed + k for _, k in chunk],
            pad_id=generator.pad_id,
        )  # (b, H*W)
        with torch.no_grad():
            pixels = tokenizer.decode_indices(codes.to(tokenizer.quantizer.codebook.device), grid)
        for job, image in zip(chunk, pixels.float().cpu(), strict=True):
            drawn[job] = tensor_to_pil(image)
    return [
        PromptImages(
            prompt=text,
            images=[drawn[(i, k)] for k in range(n)],
            seeds=[seed + k for k in range(n)],
            truncated=encoded[i].truncated,
        )
        for i, text in enumerate(prompts)
    ]


def generate(
    prompts: str | Sequence[str],
    n: int = 4,
    cfg: float = DEFAULT_CFG,
    seed: int = 0,
    model: str | os.PathLike[str] | ImageGenerator | None = None,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    cache: CacheKind = "static",
    batch_size: int = 8,
    device: str | torch.device = "auto",
) -> list[Image.Image]:
    """Images for text prompts: ``n`` per prompt, prompt after prompt.

    Args:
        prompts: one prompt or several.
        n: images per prompt.
        cfg: classifier-free guidance scale (>= 0; 1 is none).
        seed: image ``k`` of every prompt is drawn with seed ``seed + k``.
        model: a generator folder, a catalogue name, or a loaded :class:`ImageGenerator`
            (default: the shipped demo generator).
        temperature, top_k, top_p: the draw (temperature 0: greedy).
        cache: the KV cache, ``"static"`` or ``"dynamic"``.
        batch_size: images drawn together.
        device: where the model runs when it is loaded here.

    Returns:
        ``len(prompts) * n`` RGB images.
    """
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    sampling = SamplingConfig(
        cfg=cfg, temperature=temperature, top_k=top_k, top_p=top_p, cache=cache
    )
    generator = load_generator(model, device=device)
    groups = generate_for_prompts(
        generator, texts, n=n, seed=seed, sampling=sampling, batch_size=batch_size
    )
    return [image for group in groups for image in group.images]
