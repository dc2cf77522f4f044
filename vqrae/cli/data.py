"""Data commands: ``vqrae shapes make``."""

from __future__ import annotations

import argparse

from vqrae.cli.args import add_function_command, command_group
from vqrae.cli.common import CommandError, check_positive


def shapes_make(
    *, out: str, n: int, seed: int = 0, size: int = 256, split: str = "train", hf: bool = True
) -> int:
    """Render shapes-world scenes and every layout that follows from them.

    Writes images, captions in several phrasings, GenEval metadata (its prompt-folder layout),
    LLaVA conversations (their questions also one per line with their truths in
    vqa/questions.jsonl; held-out wordings outside the train split), MME's folder layout, GQA
    questions and a DPG-Bench CSV into OUT, and the same as a Hugging Face `datasets` dataset
    (save_to_disk) unless --no-hf.

    Args:
        out: output folder.
        n: number of scenes.
        seed: base seed (with the split it fixes everything written).
        size: image side in pixels.
        split: "train", "validation" or "test" (held-out splits use other seeds and phrasings).
        hf: also write the `datasets` dataset.
    """
    from vqrae.data.shapes import make_shapes_dataset

    check_positive("--n", n)
    check_positive("--size", size)
    try:
        summary = make_shapes_dataset(out, n, seed=seed, size=size, split=split, hf=hf)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    counts = ", ".join(f"{v} {k}" for k, v in summary.counts.items())
    print(f"wrote {counts} to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``shapes`` group."""
    shapes = command_group(subparsers, "shapes", "the shapes world: scenes with known truth")
    add_function_command(shapes, "make", shapes_make)
