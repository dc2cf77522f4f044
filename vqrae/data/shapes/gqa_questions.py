"""GQA-style questions from a scene, in GQA's questions JSON.

Format (``testdev_balanced_questions.json``): ``{qid: {"imageId", "question", "answer",
"fullAnswer", "isBalanced", "types": {"structural", "semantic", "detailed"}, "semantic": [],
"groups": {"global": null, "local": null}, "entailed": [], "equivalent": [qid]}}``; the official
``eval.py`` reads ``imageId``-free fields ``question``, ``answer``, ``types``, ``isBalanced``,
``semantic`` and ``groups`` and runs on this file.

Structural types as GQA defines them: ``verify`` (yes/no about one fact), ``query`` (an open
answer), ``logical`` (and / or of two facts), ``choose`` (one of two named options) and
``compare`` (two objects compared); semantic types ``obj``, ``attr``, ``cat``, ``rel``. The
detailed types are this world's, named in GQA's style. GQA has no counting questions; neither
does this file. Answers are lower-case single words, as GQA's are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vqrae.data.shapes.colour import COLOUR_NAMES
from vqrae.data.shapes.relations import OPPOSITE
from vqrae.data.shapes.scene import Scene
from vqrae.data.shapes.vocab import SHAPES
from vqrae.data.shapes.vqa import clear_relations, relation_phrase

__all__ = ["STRUCTURAL_TYPES", "gqa_questions"]

STRUCTURAL_TYPES: tuple[str, ...] = ("verify", "query", "logical", "choose", "compare")
_SIDE = {"left of": "left", "right of": "right", "above": "above", "below": "below"}


def _q(
    question: str, answer: str, full: str, structural: str, semantic: str, detailed: str
) -> dict[str, Any]:
    return {
        "question": question,
        "answer": answer,
        "fullAnswer": full,
        "isBalanced": True,
        "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
        "semantic": [],
        "groups": {"global": None, "local": None},
        "entailed": [],
    }


def gqa_questions(
    rng: np.random.Generator, scene: Scene, image_id: str, first_qid: int
) -> dict[str, dict[str, Any]]:
    """Questions about ``scene`` keyed by qid (``str(first_qid)``, ``str(first_qid + 1)``, ...)."""
    counts = scene.counts()
    present = [s for s in SHAPES if counts[s]]
    absent = [s for s in SHAPES if not counts[s]]
    uniform = {s: next(iter(scene.colours_of(s))) for s in present if len(scene.colours_of(s)) == 1}
    items: list[dict[str, Any]] = []
    truth = bool(rng.random() < 0.5)

    def pick(seq: list[Any]) -> Any:
        return seq[int(rng.integers(len(seq)))]

    # verify / obj: existence of a coloured class
    o = pick(list(scene.objects))
    if truth or not (wrong := [c for c in COLOUR_NAMES if c not in scene.colours_of(o.shape)]):
        items.append(
            _q(
                f"Is there a {o.colour} {o.shape}?",
                "yes",
                f"Yes, there is a {o.colour} {o.shape}.",
                "verify",
                "obj",
                "existAttr",
            )
        )
    else:
        c = pick(wrong)
        items.append(
            _q(
                f"Is there a {c} {o.shape}?",
                "no",
                f"No, there is no {c} {o.shape}.",
                "verify",
                "obj",
                "existAttr",
            )
        )
    # logical / obj: "and" true when both are present, "or" false when both are absent
    if rng.random() < 0.5:
        if len(present) >= 2 and (rng.random() < 0.5 or not absent):
            a, b = (present[int(i)] for i in rng.choice(len(present), size=2, replace=False))
            answer, full = "yes", f"Yes, there are both a {a} and a {b}."
        elif absent:
            a, b = pick(present), pick(absent)
            answer, full = "no", f"No, there is a {a} but no {b}."
        else:
            a = b = ""
        if a:
            items.append(
                _q(f"Are there both a {a} and a {b}?", answer, full, "logical", "obj", "existAnd")
            )
    else:
        if len(absent) >= 2 and rng.random() < 0.5:
            a, b = (absent[int(i)] for i in rng.choice(len(absent), size=2, replace=False))
            answer, full = "no", f"No, there is neither a {a} nor a {b}."
        elif absent:
            a, b = pick(absent), pick(present)
            answer, full = "yes", f"Yes, there is a {b}."
        else:
            a = b = ""
        if a:
            items.append(_q(f"Is there a {a} or a {b}?", answer, full, "logical", "obj", "existOr"))
    # query / attr and choose / attr: colour of a single-coloured class
    if uniform:
        s = pick(list(uniform))
        c = uniform[s]
        items.append(
            _q(f"What color is the {s}?", c, f"The {s} is {c}.", "query", "attr", "queryColor")
        )
        other = pick([x for x in COLOUR_NAMES if x != c])
        options = (c, other) if rng.random() < 0.5 else (other, c)
        items.append(
            _q(
                f"Is the {s} {options[0]} or {options[1]}?",
                c,
                f"The {s} is {c}.",
                "choose",
                "attr",
                "chooseColor",
            )
        )
    # query / cat: the class of a uniquely coloured object
    unique = [x for x in scene.objects if sum(y.colour == x.colour for y in scene.objects) == 1]
    if unique:
        x = pick(unique)
        items.append(
            _q(
                f"What shape is the {x.colour} object?",
                x.shape,
                f"The {x.colour} object is a {x.shape}.",
                "query",
                "cat",
                "queryShape",
            )
        )
    # compare / attr: "the same color" or "different colors", at random
    if len(uniform) >= 2:
        a, b = (list(uniform)[int(i)] for i in rng.choice(len(uniform), size=2, replace=False))
        same = uniform[a] == uniform[b]
        full = f"the {a} is {uniform[a]} and the {b} is {uniform[b]}."
        if rng.random() < 0.5:
            question, answer, detailed = (
                f"Do the {a} and the {b} have the same color?",
                same,
                "sameColor",
            )
        else:
            question, answer, detailed = (
                f"Do the {a} and the {b} have different colors?",
                not same,
                "diffColor",
            )
        items.append(
            _q(
                question,
                "yes" if answer else "no",
                f"{'Yes' if answer else 'No'}, {full}",
                "compare",
                "attr",
                detailed,
            )
        )
    # verify / rel and choose / rel
    rels = clear_relations(scene)
    if rels:
        a, rel, b = pick(rels)
        asked = rel if rng.random() < 0.5 else OPPOSITE[rel]
        yes = asked == rel
        items.append(
            _q(
                f"Is the {a} {relation_phrase(asked)} the {b}?",
                "yes" if yes else "no",
                f"{'Yes' if yes else 'No'}, the {a} is {relation_phrase(rel)} the {b}.",
                "verify",
                "rel",
                "relVerify",
            )
        )
        first, second = (rel, OPPOSITE[rel]) if rng.random() < 0.5 else (OPPOSITE[rel], rel)
        items.append(
            _q(
                f"Is the {a} {relation_phrase(first)} or {relation_phrase(second)} the {b}?",
                _SIDE[rel],
                f"The {a} is {relation_phrase(rel)} the {b}.",
                "choose",
                "rel",
                "chooseRel",
            )
        )
    out = {}
    for k, q in enumerate(items):
        qid = str(first_qid + k)
        out[qid] = {"imageId": image_id, **q, "equivalent": [qid]}
    return out
