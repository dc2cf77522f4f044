"""``vqrae demo``: the main job on the shipped demo models, in one command (``make demo``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vqrae.cli.args import add_function_command
from vqrae.cli.common import DEFAULT_TOKENIZER, CommandError
from vqrae.cli.generation import DEFAULT_GENERATOR
from vqrae.cli.generation import generate as generate_images
from vqrae.cli.mllm import DEFAULT_MLLM
from vqrae.cli.mllm import answer as answer_questions
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
    understanding: str = DEFAULT_MLLM,
    device: str = "auto",
) -> int:
    """The main job on the shipped demo models: reconstruction, text to image, visual questions.

    Reconstruction: draws the package's sample images and a few held-out shapes-world scenes
    into OUT/inputs (plus any IMAGES given) and writes their reconstructions through the
    discrete codes into OUT/reconstructions.
    Text to image: draws N images for each demo prompt (or each PROMPT given) with the
    generator into OUT/generated, image K of prompt NNN as NNN_K.png beside its prompt NNN.txt.
    Visual questions: asks the understanding model a few held-out questions about each
    shapes-world sample and prints each answer beside the truth (OUT/questions.jsonl,
    OUT/answers.jsonl in LLaVA's formats).
    A generator or understanding model that is not in this installation is reported and
    skipped.

    Args:
        model: a trained tokenizer: a checkpoint directory or a trained name.
        out: output folder.
        images: extra image files or folders to reconstruct.
        generator: a text-to-image generator folder or catalogue name.
        prompt: prompts to draw instead of the demo's.
        n: images per prompt.
        understanding: an understanding model folder or catalogue name.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """
    from vqrae.data.samples import write_samples, write_shapes_samples

    out_dir = Path(out)
    inputs = out_dir / "inputs"
    write_samples(inputs)
    write_shapes_samples(inputs)
    sources = [str(inputs), *(images or [])]
    status = reconstruct(sources, model=model, out=str(out_dir / "reconstructions"), device=device)
    status |= _text_to_image(out_dir / "generated", generator, list(prompt or DEMO_PROMPTS), n,
                             device)  # fmt: skip
    return status | _visual_questions(out_dir, inputs, understanding, device)


def _text_to_image(out: Path, generator: str, prompts: list[str], n: int, device: str) -> int:
    from vqrae import assets
    from vqrae.generation.api import GeneratorUnavailableError, find_generator

    try:
        find_generator(generator)
    except (GeneratorUnavailableError, assets.AssetError) as exc:
        print(f"text to image skipped: {exc}")
        return 0
    try:
        return generate_images(prompt=prompts, n=n, out=str(out), model=generator, device=device)
    except CommandError as exc:
        raise CommandError(f"text to image: {exc}") from None


def _visual_questions(out: Path, images: Path, model: str, device: str) -> int:
    """Ask held-out questions about the shapes samples in ``images``; print answer and truth."""
    import json

    from vqrae import assets
    from vqrae.data.samples import shapes_sample_questions
    from vqrae.eval.vqa import normalise_short_answer
    from vqrae.mllm.model import find_mllm
    from vqrae.utils.files import atomic_write
    from vqrae.utils.jsonl import read_jsonl

    try:
        find_mllm(model)
    except (ValueError, assets.AssetError) as exc:
        print(f"visual questions skipped: {exc}")
        return 0
    rows = shapes_sample_questions()
    questions, answers = out / "questions.jsonl", out / "answers.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write(questions, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    answers.unlink(missing_ok=True)  # answers of this model, not of an earlier run
    try:
        status = answer_questions(questions=str(questions), image_folder=str(images),
                                  out=str(answers), model=model, max_new_tokens=16,
                                  device=device)  # fmt: skip
    except CommandError as exc:
        raise CommandError(f"visual questions: {exc}") from None
    said = {a["question_id"]: a["text"] for a in read_jsonl(answers)}
    right = 0
    print("visual questions (held-out wordings) about the shapes samples:")
    for r in rows:
        reply = said.get(r["question_id"], "(no answer)")
        ok = normalise_short_answer(reply) == normalise_short_answer(r["answer"])
        right += ok
        print(f"  {r['image']}: {r['text'].splitlines()[0]} -> {reply} "
              f"[{'right' if ok else 'wrong'}; truth {r['answer']}]")  # fmt: skip
    print(f"{right} of {len(rows)} right; answers in {answers}")
    return status


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's commands."""
    add_function_command(subparsers, "demo", demo)
