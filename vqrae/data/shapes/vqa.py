"""Visual questions and answers from a scene, and LLaVA's conversation format.

Kinds: ``existence`` (yes/no), ``count`` (a digit), ``colour`` (a colour name), ``shape`` (a
class name) and ``position`` (yes/no, GenEval's relations with a margin). Yes/no questions come
in true/false pairs, so "yes" is never the better guess. Answers are capitalised as a short
answer ("Yes", "Red", "3"); evaluations lower-case them.

LLaVA's format (``llava_v1_5_mix665k.json``)::

    {"id": "000001", "image": "images/000001.png", "conversations": [
        {"from": "human", "value": "<image>\\nIs there a star?\\nAnswer the question using a single word or phrase."},
        {"from": "gpt", "value": "Yes"}, ...]}

Only the first human turn carries the ``<image>`` token. A conversation leaves out the turns
whose answer its earlier turns give away (:func:`without_giveaways`); the model_vqa question
rows, asked one at a time, keep every question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vqrae.data.shapes.colour import COLOUR_NAMES
from vqrae.data.shapes.geneval_prompts import POSITION_MARGIN
from vqrae.data.shapes.question_phrasings import SHORT_ANSWER, YES_NO, PhrasingSet, templates
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
    "question_row",
    "relation_phrase",
    "scene_questions",
    "without_giveaways",
]

QA_KINDS: tuple[str, ...] = ("existence", "count", "colour", "shape", "position")
_REL_WORDS = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}


_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


@dataclass(frozen=True)
class QA:
    """One question with its answer, and the instruction that follows the question."""

    kind: str
    question: str
    answer: str
    suffix: str = SHORT_ANSWER


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


def _be(count: int) -> str:
    return "is" if count == 1 else "are"


def scene_questions(
    rng: np.random.Generator,
    scene: Scene,
    kinds: Sequence[str] = QA_KINDS,
    phrasings: PhrasingSet = "train",
) -> list[QA]:
    """Questions about the scene, a few of each kind that the scene supports.

    Each question's wording and suffix are drawn from ``phrasings`` (see
    :mod:`~vqrae.data.shapes.question_phrasings`): ``train`` for training data, ``heldout`` for
    evaluation in wordings training never showed.
    """
    counts = scene.counts()
    present = [s for s in SHAPES if counts[s]]
    absent = [s for s in SHAPES if not counts[s]]
    qas: list[QA] = []

    def ask(kind: str, form: str, answer: str, **fields: str) -> None:
        question = _choice(rng, templates(phrasings, form)).format(**fields)
        yes_no = kind in ("existence", "position")
        suffix = _choice(rng, (SHORT_ANSWER, YES_NO)) if yes_no else SHORT_ANSWER
        qas.append(QA(kind, question, answer, suffix))

    if "existence" in kinds:
        ask("existence", "exists", "Yes", thing=_choice(rng, present))
        if absent:
            ask("existence", "exists", "No", thing=_choice(rng, absent))
        o = _choice(rng, scene.objects)
        ask("existence", "exists", "Yes", thing=f"{o.colour} {o.shape}")
        wrong = [c for c in COLOUR_NAMES if c not in scene.colours_of(o.shape)]
        ask("existence", "exists", "No", thing=f"{_choice(rng, wrong)} {o.shape}")
    if "count" in kinds:
        s = _choice(rng, present)
        ask("count", "count", str(counts[s]), things=plural(s))
        if absent and rng.random() < 0.3:
            ask("count", "count", "0", things=plural(_choice(rng, absent)))
        if len(present) > 1:
            ask("count", "total", str(len(scene.objects)))
    if "colour" in kinds:
        uniform = [s for s in present if len(scene.colours_of(s)) == 1]
        if uniform:
            s = _choice(rng, uniform)
            colour = scene.of_shape(s)[0].colour.capitalize()
            ask("colour", "colour", colour, be=_be(counts[s]), the=_the(s, counts[s]))
    if "shape" in kinds:
        by_colour = {c: {o.shape for o in scene.objects if o.colour == c} for c in COLOUR_NAMES}
        unique = [c for c, shapes in by_colour.items() if len(shapes) == 1]
        if unique:
            c = _choice(rng, unique)
            (s,) = by_colour[c]
            n = sum(o.colour == c for o in scene.objects)
            obj = "object" if n == 1 else "objects"
            ask("shape", "shape", s.capitalize(), colour=c, obj=obj, be=_be(n))
    if "position" in kinds:
        rels = clear_relations(scene)
        if rels:
            a, rel, b = _choice(rng, rels)
            opposite = _OPPOSITE[rel]
            ask("position", "position", "Yes", a=a, rel=relation_phrase(rel), b=b)
            ask("position", "position", "No", a=a, rel=relation_phrase(opposite), b=b)
    # In a shuffled order: in a fixed one (the present shape first, then an absent one, ...)
    # a model reads the answer off the turn's position instead of the image.
    return [qas[i] for i in rng.permutation(len(qas))]


_SINGULAR = {plural(s): s for s in SHAPES} | {s: s for s in SHAPES}


def _names(text: str) -> frozenset[str]:
    """The colour and shape names (singular) a text mentions."""
    words = "".join(c if c.isalpha() else " " for c in text.lower()).split()
    return frozenset(_SINGULAR.get(w, w) for w in words if w in _SINGULAR or w in COLOUR_NAMES)


def without_giveaways(qas: Sequence[QA]) -> list[QA]:
    """The turns of a conversation whose answer the earlier turns do not give away.

    A turn is left out when every colour and shape name in its question and answer came up in
    the turns kept before it ("What shape is the brown object?" after "Is there a brown
    triangle? Yes", "How many crosses?" after "Is there a cross? No"), and a position question
    when one on the same pair came before (its opposite gives its answer). Turns naming no
    colour or shape (the total count) are kept. A model trained on giveaway turns learns to
    copy answers from the conversation rather than read the image, and fails on a question
    asked alone (in the demo's 3,000 training scenes, 70% of the shape answers and 44% of the
    colour answers had come up in an earlier turn).

    Present things come up more often than absent ones, so more "Yes" turns go; the last turns
    of the more frequent yes/no answer are left out too, until "Yes" and "No" are as many.
    """
    mentioned: set[str] = set()
    kept = []
    for qa in qas:
        names = _names(f"{qa.question} {qa.answer}")
        # a relation is given away by a question on the same pair, not by the names alone
        key = {"position: " + " ".join(sorted(names))} if qa.kind == "position" else names
        if key and key <= mentioned:
            continue
        kept.append(qa)
        mentioned |= key | names
    yes = [i for i, qa in enumerate(kept) if qa.answer == "Yes"]
    no = [i for i, qa in enumerate(kept) if qa.answer == "No"]
    more, fewer = (yes, no) if len(yes) > len(no) else (no, yes)
    surplus = set(more[len(fewer) :])
    return [qa for i, qa in enumerate(kept) if i not in surplus]


def llava_record(
    record_id: str, image: str, qas: Sequence[QA], short_answer: bool = True
) -> dict[str, Any]:
    """A multi-turn LLaVA conversation: ``<image>`` in the first human turn only."""
    if not qas:
        raise ValueError(f"{record_id}: a conversation needs at least one question")
    turns = []
    for i, qa in enumerate(qas):
        text = f"{qa.question}\n{qa.suffix}" if short_answer else qa.question
        turns.append({"from": "human", "value": f"<image>\n{text}" if i == 0 else text})
        turns.append({"from": "gpt", "value": qa.answer})
    return {"id": record_id, "image": image, "conversations": turns}


def question_row(question_id: str, image: str, qa: QA) -> dict[str, Any]:
    """One question as LLaVA's ``model_vqa`` reads it, with its truth for scoring
    (:func:`vqrae.eval.vqa.score_vqa`)."""
    return {
        "question_id": question_id,
        "image": image,
        "text": f"{qa.question}\n{qa.suffix}",
        "answer": qa.answer,
        "category": qa.kind,
    }


def llava_caption_record(record_id: str, image: str, caption: str) -> dict[str, Any]:
    """A caption pair for LLaVA's projector pretraining (the ``plain`` template's data)."""
    return {
        "id": record_id,
        "image": image,
        "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": caption}],
    }
