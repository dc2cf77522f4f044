"""Visual questions and answers from a scene, and LLaVA's conversation format.

Kinds: ``existence`` (yes/no), ``count`` (a digit), ``colour`` (a colour name), ``shape`` (a
class name) and ``position`` (yes/no, GenEval's relations with a margin). Yes/no questions come
in true/false pairs, so "yes" is never the better guess. Answers are capitalised as a short
answer ("Yes", "Red", "3"); evaluations lower-case them.

LLaVA's format (``llava_v1_5_mix665k.json``)::

    {"id": "000001", "image": "images/000001.png", "conversations": [
        {"from": "human", "value": "<image>\\nIs there a star?\\nAnswer the question using a single word or phrase."},
        {"from": "gpt", "value": "Yes"}, ...]}

Only the first human turn carries the ``<image>`` token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vqrae.data.shapes.colour import COLOUR_NAMES
from vqrae.data.shapes.geneval_prompts import POSITION_MARGIN
from vqrae.data.shapes.relations import RELATIONS, relation_scores
from vqrae.data.shapes.scene import Scene
from vqrae.data.shapes.vocab import SHAPES, plural

__all__ = [
    "QA_KINDS",
    "SHORT_ANSWER",
    "QA",
    "clear_relations",
    "llava_caption_record",
    "llava_record",
    "relation_phrase",
    "scene_questions",
]

QA_KINDS: tuple[str, ...] = ("existence", "count", "colour", "shape", "position")
#: LLaVA-1.5's instruction for short answers.
SHORT_ANSWER = "Answer the question using a single word or phrase."
_REL_WORDS = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}


@dataclass(frozen=True)
class QA:
    """One question with its answer."""

    kind: str
    question: str
    answer: str


def relation_phrase(rel: str) -> str:
    """GenEval's relation as a question says it: ``left of`` -> ``to the left of``."""
    return _REL_WORDS[rel]


def clear_relations(scene: Scene, margin: float = POSITION_MARGIN) -> list[tuple[str, str, str]]:
    """``(a, relation, b)`` for every pair of single-object classes with a clear relation."""
    singles = [s for s in SHAPES if scene.counts()[s] == 1]
    out = []
    for a in singles:
        for b in singles:
            if a == b:
                continue
            scores = relation_scores(scene.of_shape(a)[0].box(512), scene.of_shape(b)[0].box(512))
            if scores is None:
                continue
            out += [(a, rel, b) for rel in RELATIONS if scores[rel] >= 0.5 + margin]
    return out


def _choice(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _the(shape: str, count: int) -> str:
    return f"the {shape}" if count == 1 else f"the {plural(shape)}"


def scene_questions(
    rng: np.random.Generator, scene: Scene, kinds: Sequence[str] = QA_KINDS
) -> list[QA]:
    """Questions about the scene, a few of each kind that the scene supports."""
    counts = scene.counts()
    present = [s for s in SHAPES if counts[s]]
    absent = [s for s in SHAPES if not counts[s]]
    qas: list[QA] = []
    if "existence" in kinds:
        s = _choice(rng, present)
        qas.append(QA("existence", f"Is there a {s} in the image?", "Yes"))
        if absent:
            qas.append(QA("existence", f"Is there a {_choice(rng, absent)} in the image?", "No"))
        o = _choice(rng, scene.objects)
        qas.append(QA("existence", f"Is there a {o.colour} {o.shape} in the image?", "Yes"))
        wrong = [c for c in COLOUR_NAMES if c not in scene.colours_of(o.shape)]
        qas.append(
            QA("existence", f"Is there a {_choice(rng, wrong)} {o.shape} in the image?", "No")
        )
    if "count" in kinds:
        s = _choice(rng, present)
        qas.append(QA("count", f"How many {plural(s)} are there?", str(counts[s])))
        if absent and rng.random() < 0.3:
            qas.append(QA("count", f"How many {plural(_choice(rng, absent))} are there?", "0"))
        if len(present) > 1:
            qas.append(QA("count", "How many shapes are there in total?", str(len(scene.objects))))
    if "colour" in kinds:
        uniform = [s for s in present if len(scene.colours_of(s)) == 1]
        if uniform:
            s = _choice(rng, uniform)
            verb = "is" if counts[s] == 1 else "are"
            qas.append(
                QA(
                    "colour",
                    f"What color {verb} {_the(s, counts[s])}?",
                    scene.of_shape(s)[0].colour.capitalize(),
                )
            )
    if "shape" in kinds:
        by_colour = {c: {o.shape for o in scene.objects if o.colour == c} for c in COLOUR_NAMES}
        unique = [c for c, shapes in by_colour.items() if len(shapes) == 1]
        if unique:
            c = _choice(rng, unique)
            (s,) = by_colour[c]
            n = sum(o.colour == c for o in scene.objects)
            question = (
                f"What shape is the {c} object?" if n == 1 else f"What shape are the {c} objects?"
            )
            qas.append(QA("shape", question, s.capitalize()))
    if "position" in kinds:
        rels = clear_relations(scene)
        if rels:
            a, rel, b = _choice(rng, rels)
            qas.append(QA("position", f"Is the {a} {relation_phrase(rel)} the {b}?", "Yes"))
            opposite = {
                "left of": "right of",
                "right of": "left of",
                "above": "below",
                "below": "above",
            }[rel]
            qas.append(QA("position", f"Is the {a} {relation_phrase(opposite)} the {b}?", "No"))
    return qas


def llava_record(
    record_id: str, image: str, qas: Sequence[QA], short_answer: bool = True
) -> dict[str, Any]:
    """A multi-turn LLaVA conversation: ``<image>`` in the first human turn only."""
    if not qas:
        raise ValueError(f"{record_id}: a conversation needs at least one question")
    turns = []
    for i, qa in enumerate(qas):
        text = f"{qa.question}\n{SHORT_ANSWER}" if short_answer else qa.question
        turns.append({"from": "human", "value": f"<image>\n{text}" if i == 0 else text})
        turns.append({"from": "gpt", "value": qa.answer})
    return {"id": record_id, "image": image, "conversations": turns}


def llava_caption_record(record_id: str, image: str, caption: str) -> dict[str, Any]:
    """A caption pair for LLaVA's projector pretraining (the ``plain`` template's data)."""
    return {
        "id": record_id,
        "image": image,
        "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": caption}],
    }
