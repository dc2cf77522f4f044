"""MME-style yes/no pairs from scenes, in the layout ``vqrae.eval.mme`` scores unchanged.

Four perception subtasks have a meaning here: ``existence``, ``count``, ``position`` and
``color``. Each image gets two questions, the first true ("Yes") and the second false ("No"),
ending in ``Please answer yes or no.`` as MME's do. Written layout::

    <root>/<subtask>/<image>.png              the images (MME keeps them per subtask)
    <root>/<subtask>/<image>.txt              question<TAB>answer, one line per question
    <root>/ground_truth/<subtask>.txt         image<TAB>question<TAB>Yes|No (the eval tool's files)
    <root>/questions.jsonl                    LLaVA's question file: question_id "<subtask>/<image>",
                                              text "<question without the suffix>\\n<instruction>"

``vqrae eval-mme --questions Q --answers A --ground-truth <root>/ground_truth`` then scores a
model's ``answers.jsonl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vqrae.data.shapes.colour import COLOUR_NAMES
from vqrae.data.shapes.relations import OPPOSITE
from vqrae.data.shapes.scene import Scene
from vqrae.data.shapes.vocab import SHAPES, number_word, plural
from vqrae.data.shapes.vqa import SHORT_ANSWER, clear_relations
from vqrae.utils.files import atomic_write

__all__ = ["MME_SUBTASKS", "YES_NO_SUFFIX", "MMEItem", "mme_pair", "write_mme"]

MME_SUBTASKS: tuple[str, ...] = ("existence", "count", "position", "color")
YES_NO_SUFFIX = "Please answer yes or no."
_MME_REL = {
    "left of": "on the left of",
    "right of": "on the right of",
    "above": "above",
    "below": "below",
}


@dataclass(frozen=True)
class MMEItem:
    """One MME image: its subtask, file name, scene and its (true, false) questions."""

    subtask: str
    image: str
    scene: Scene
    questions: tuple[str, str]


def _count_question(shape: str, n: int) -> str:
    if n == 1:
        return f"Is there only one {shape} in the image? {YES_NO_SUFFIX}"
    return f"Are there {number_word(n)} {plural(shape)} in the image? {YES_NO_SUFFIX}"


def mme_pair(rng: np.random.Generator, scene: Scene, subtask: str) -> tuple[str, str] | None:
    """A (true, false) question pair of ``subtask`` about the scene, or ``None`` if unsupported."""
    counts = scene.counts()
    present = [s for s in SHAPES if counts[s]]
    if subtask == "existence":
        absent = [s for s in SHAPES if not counts[s]]
        if not absent:
            return None
        yes, no = present[int(rng.integers(len(present)))], absent[int(rng.integers(len(absent)))]
        return (
            f"Is there a {yes} in this image? {YES_NO_SUFFIX}",
            f"Is there a {no} in this image? {YES_NO_SUFFIX}",
        )
    if subtask == "count":
        s = present[int(rng.integers(len(present)))]
        wrong = [m for m in range(1, 6) if m != counts[s]]
        return _count_question(s, counts[s]), _count_question(
            s, wrong[int(rng.integers(len(wrong)))]
        )
    if subtask == "position":
        rels = clear_relations(scene)
        if not rels:
            return None
        a, rel, b = rels[int(rng.integers(len(rels)))]
        return (
            f"Is the {a} {_MME_REL[rel]} the {b}? {YES_NO_SUFFIX}",
            f"Is the {a} {_MME_REL[OPPOSITE[rel]]} the {b}? {YES_NO_SUFFIX}",
        )
    if subtask == "color":
        o = scene.objects[int(rng.integers(len(scene.objects)))]
        wrong = [c for c in COLOUR_NAMES if c not in scene.colours_of(o.shape)]
        c = wrong[int(rng.integers(len(wrong)))]
        return (
            f"Is there a {o.colour} {o.shape} in the image? {YES_NO_SUFFIX}",
            f"Is there a {c} {o.shape} in the image? {YES_NO_SUFFIX}",
        )
    raise ValueError(f"unknown MME subtask {subtask!r}; expected one of {list(MME_SUBTASKS)}")


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_mme(
    root: str | os.PathLike[str], items: Sequence[MMEItem], images: Sequence[Image.Image]
) -> dict[str, Path]:
    """Write MME's layout (see the module docstring) for ``items`` and their rendered images.

    Returns:
        ``{"ground_truth": folder, "questions": LLaVA question file}``.
    """
    if len(items) != len(images):
        raise ValueError(f"{len(items)} items but {len(images)} images")
    root = Path(root)
    gt_lines: dict[str, list[str]] = {s: [] for s in MME_SUBTASKS}
    questions: list[str] = []
    for item, image in zip(items, images, strict=True):
        if item.subtask not in MME_SUBTASKS:
            raise ValueError(f"{item.image}: unknown MME subtask {item.subtask!r}")
        folder = root / item.subtask
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / item.image, lambda tmp, im=image: im.save(tmp, format="PNG"))
        pairs = list(zip(item.questions, ("Yes", "No"), strict=True))
        _write_text(
            folder / f"{Path(item.image).stem}.txt", "".join(f"{q}\t{a}\n" for q, a in pairs)
        )
        for q, a in pairs:
            gt_lines[item.subtask].append(f"{item.image}\t{q}\t{a}\n")
            text = q.replace(YES_NO_SUFFIX, "").strip()
            questions.append(
                json.dumps(
                    {
                        "question_id": f"{item.subtask}/{item.image}",
                        "image": f"{item.subtask}/{item.image}",
                        "text": f"{text}\n{SHORT_ANSWER}",
                        "category": item.subtask,
                    }
                )
                + "\n"
            )
    for subtask, lines in gt_lines.items():
        if lines:
            _write_text(root / "ground_truth" / f"{subtask}.txt", "".join(lines))
    _write_text(root / "questions.jsonl", "".join(questions))
    return {"ground_truth": root / "ground_truth", "questions": root / "questions.jsonl"}
