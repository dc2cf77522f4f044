"""DPG-Bench items from scenes: a dense prompt, its propositions as CSV rows, and their truth.

Columns are DPG-Bench's (``dpg_bench.csv``): ``item_id, text, keywords, proposition_id,
dependency, category_broad, category_detailed, tuple, question_natural_language``. Proposition
ids start at 1 per item; ``dependency`` lists the parent ids, comma-separated, ``"0"`` for none.
Tuples use DPG's ``"<broad> - <detailed> (<arguments>)"`` form:

* ``entity - whole (circle)``: "Is there a circle?" (no parent);
* ``other - count (circle, ==3)``: "Are there three circles?" (parent: the entity);
* ``attribute - color (circle, red)``: "Is the circle red?" (parent: the entity);
* ``relation - spatial (circle, square, left of)``: "Is the circle to the left of the square?"
  (parents: both entities).

:func:`proposition_holds` decides a tuple on a scene's truth (the oracle judge's answer).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from vqrae.data.shapes.captions import caption
from vqrae.data.shapes.relations import relation_scores
from vqrae.data.shapes.sampler import SamplerConfig, place_objects, sample_ground
from vqrae.data.shapes.scene import Scene, ShapeObject
from vqrae.data.shapes.vocab import SHAPES, number_word, plural
from vqrae.data.shapes.vqa import clear_relations, relation_phrase

__all__ = [
    "DPG_COLUMNS",
    "dpg_rows",
    "dpg_text",
    "proposition_holds",
    "relayout",
    "rows_to_csv",
]

DPG_COLUMNS: tuple[str, ...] = (
    "item_id",
    "text",
    "keywords",
    "proposition_id",
    "dependency",
    "category_broad",
    "category_detailed",
    "tuple",
    "question_natural_language",
)
_TUPLE = re.compile(r"^(?P<broad>\w+) - (?P<detailed>\w+) \((?P<args>.*)\)$")


def dpg_text(scene: Scene, phrasing: str = "geneval") -> str:
    """A dense prompt: the caption, then one sentence per clear relation."""
    sentences = [caption(scene, phrasing).capitalize() + "."]
    for a, rel, b in clear_relations(scene):
        if SHAPES.index(a) < SHAPES.index(b):
            sentences.append(f"The {a} is {relation_phrase(rel)} the {b}.")
    return " ".join(sentences)


def dpg_rows(scene: Scene, item_id: str, phrasing: str = "geneval") -> list[dict[str, str]]:
    """The item's CSV rows (one per proposition), all true of ``scene``."""
    counts = scene.counts()
    present = [s for s in SHAPES if counts[s]]
    text = dpg_text(scene, phrasing)
    keywords = ", ".join(present)
    rows: list[dict[str, str]] = []

    def add(broad: str, detailed: str, args: str, question: str, parents: Sequence[int]) -> int:
        pid = len(rows) + 1
        rows.append(
            {
                "item_id": item_id,
                "text": text,
                "keywords": keywords,
                "proposition_id": str(pid),
                "dependency": ",".join(str(p) for p in parents) or "0",
                "category_broad": broad,
                "category_detailed": detailed,
                "tuple": f"{broad} - {detailed} ({args})",
                "question_natural_language": question,
            }
        )
        return pid

    entity: dict[str, int] = {}
    for s in present:
        n = counts[s]
        entity[s] = add(
            "entity", "whole", s, f"Is there a {s}?" if n == 1 else f"Are there {plural(s)}?", ()
        )
        if n > 1:
            add(
                "other",
                "count",
                f"{s}, =={n}",
                f"Are there {number_word(n)} {plural(s)}?",
                (entity[s],),
            )
        colours = scene.colours_of(s)
        if len(colours) == 1:
            (c,) = colours
            question = f"Is the {s} {c}?" if n == 1 else f"Are the {plural(s)} {c}?"
            add("attribute", "color", f"{s}, {c}", question, (entity[s],))
    for a, rel, b in clear_relations(scene):
        if SHAPES.index(a) < SHAPES.index(b):
            add(
                "relation",
                "spatial",
                f"{a}, {b}, {rel}",
                f"Is the {a} {relation_phrase(rel)} the {b}?",
                (entity[a], entity[b]),
            )
    return rows


def proposition_holds(scene: Scene, tuple_text: str) -> bool:
    """Whether a proposition written by :func:`dpg_rows` is true of ``scene``.

    Raises:
        ValueError: The tuple is not one of the four forms this world writes.
    """
    m = _TUPLE.match(tuple_text.strip())
    if m is None:
        raise ValueError(f"not a DPG tuple: {tuple_text!r}")
    kind = f"{m['broad']} - {m['detailed']}"
    args = [a.strip() for a in m["args"].split(",")]
    if kind == "entity - whole":
        return scene.counts()[args[0]] > 0
    if kind == "other - count":
        return scene.counts()[args[0]] == int(args[1].removeprefix("=="))
    if kind == "attribute - color":
        objs = scene.of_shape(args[0])
        return bool(objs) and all(o.colour == args[1] for o in objs)
    if kind == "relation - spatial":
        a_objs, b_objs = scene.of_shape(args[0]), scene.of_shape(args[1])
        if not a_objs or not b_objs:
            return False
        for a in a_objs:
            for b in b_objs:
                scores = relation_scores(a.box(512), b.box(512))
                if scores is None or scores[args[2]] <= 0.5:
                    return False
        return True
    raise ValueError(f"unsupported DPG tuple kind {kind!r} in {tuple_text!r}")


def relayout(rng: np.random.Generator, scene: Scene, config: SamplerConfig | None = None) -> Scene:
    """The same objects (classes, colours) at new places and on a new ground, keeping every
    clear relation of the scene, so all its DPG propositions stay true (another "sample")."""
    rels = [
        (a, rel, b) for a, rel, b in clear_relations(scene) if SHAPES.index(a) < SHAPES.index(b)
    ]
    specs = [(o.shape, o.colour) for o in scene.objects]

    def accept(objects: list[ShapeObject]) -> bool:
        return set(rels) <= set(clear_relations(Scene(tuple(objects), scene.ground)))

    objects = place_objects(rng, specs, config, accept=accept, restarts=400)
    return Scene(tuple(objects), sample_ground(rng, config), dict(scene.meta))


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text with DPG's header and columns."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(DPG_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in DPG_COLUMNS})
    return buf.getvalue()
