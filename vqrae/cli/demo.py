"""``vqrae demo``: the main job on the shipped demo models, in one command (``make demo``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vqrae.cli.args import add_function_command
from vqrae.cli.common import DEFAULT_TOKENIZER, CommandError
from vqrae.cli.generation import DEFAULT_GENERATOR
from vqrae.cli.generation import generate as generate_images
from vqrae.cli.tokenizer import reconstruct

# Shapes-world prompts, GenEval's phrasing first and then others the generator was not trained
# on, one for each kind of composition GenEval scores.
DEMO_PROMPTS = (
    "a photo of a red circle",
    "a photo of two blue squares",
    "a photo of a yellow triangle and a purple cross",
    "a photo of a star left of a hexagon",
    "three green stars on a plain background",
)


def demo(
    model: str = DEFAULT_TOKENIZER,
    out: str = "outputs/demo",
    images: list[str] | None = None,
    generator: str = DEFAULT_GENERATOR,
    prompt: list[str] | None = None,
    n: int = 2,
    device: str = "auto",
) -> int:
    """The main job on the shipped demo models: reconstruction, then text to image.

    Reconstruction: draws the package's sample images and a few held-out shapes-world scenes
    into OUT/inputs (plus any IMAGES given) and writes their reconstructions through the
    discrete codes into OUT/reconstructions.
    Text to image: draws N images for each demo prompt (or each PROMPT given) with the
    generator into OUT/generated, image K of prompt NNN as NNN_K.png beside its prompt NNN.txt.
    A generator that is not shipped in this installation is reported and skipped.

    Args:
        model: a trained tokenizer: a checkpoint directory or a trained name.
        out: output folder.
        images: extra image files or folders to reconstruct.
        generator: a text-to-image generator folder or catalogue name.
        prompt: prompts to draw instead of the demo's.
        n: images per prompt.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae import assets
    from vqrae.data.samples import write_samples, write_shapes_samples
    from vqrae.generation.api import GeneratorUnavailableError, find_generator

    out_dir = Path(out)
    inputs = out_dir / "inputs"
    write_samples(inputs)
    write_shapes_samples(inputs)
    sources = [str(inputs), *(images or [])]
    status = reconstruct(sources, model=model, out=str(out_dir / "reconstructions"), device=device)
    try:
        find_generator(generator)
    except (GeneratorUnavailableError, assets.AssetError) as exc:
        print(f"text to image skipped: {exc}")
        return status
    prompts = list(prompt or DEMO_PROMPTS)
    try:
        generated = generate_images(
            prompt=prompts, n=n, out=str(out_dir / "generated"), model=generator, device=device
        )
    except CommandError as exc:
        raise CommandError(f"text to image: {exc}") from None
    return status or generated


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's commands."""
    add_function_command(subparsers, "demo", demo)
