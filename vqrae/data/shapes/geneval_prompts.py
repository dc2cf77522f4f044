"""GenEval records for the shapes world: from a scene, or sampled with a scene that satisfies them.

Records have GenEval's exact format (``evaluation_metadata.jsonl``)::

    {"tag": "single_object", "include": [{"class": "star", "count": 1}], "prompt": "a photo of a star"}
    {"tag": "counting", "include": [{"class": "circle", "count": 3}],
     "exclude": [{"class": "circle", "count": 4}], "prompt": "a photo of three circles"}
    {"tag": "position", "include": [{"class": "square", "count": 1},
     {"class": "star", "count": 1, "position": ["left of", 0]}], "prompt": "a photo of a star left of a square"}

and prompts are built with GenEval's templates (``create_prompts.py``): ``a photo of {a|an} X``,
``... X and Y``, ``... {number} {plural}`` (counts 2-4, exclude ``count + 1``), ``... a {colour} X``,
``... X {relation} Y`` (the include order is target first) and ``... a {c1} X and a {c2} Y``
(two classes, two colours). Sampling follows GenEval's draws over this world's classes.

Scenes made for a position record keep the relation with a margin (GenEval's unit component at
least ``0.5 + position_margin``), so a detector's box error of a pixel or two never flips it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vqrae.data.shapes.colour import COLOUR_NAMES
from vqrae.data.shapes.relations import RELATIONS, relation_scores
from vqrae.data.shapes.sampler import SamplerConfig, place_objects, sample_ground
from vqrae.data.shapes.scene import Scene, ShapeObject
from vqrae.data.shapes.vocab import SHAPES, number_word, plural, with_article
from vqrae.utils.files import atomic_write

__all__ = [
    "GENEVAL_TAGS",
    "POSITION_MARGIN",
    "geneval_prompt",
    "make_record",
    "record_holds",
    "records_for_scene",
    "sample_geneval_prompt",
    "sample_record",
    "scene_for_record",
    "write_geneval_prompt_dir",
]

#: GenEval's six tags, in the order of its prompt file.
GENEVAL_TAGS: tuple[str, ...] = (
    "single_object",
    "two_object",
    "counting",
    "colors",
    "position",
    "color_attr",
)
#: How far past GenEval's 0.5 a sampled position relation is kept.
POSITION_MARGIN = 0.15
Record = dict[str, Any]


def geneval_prompt(tag: str, include: Sequence[dict[str, Any]]) -> str:
    """GenEval's prompt text for a tag and its include list."""
    if tag == "single_object":
        return f"a photo of {with_article(include[0]['class'])}"
    if tag == "two_object":
        return f"a photo of {with_article(include[0]['class'])} and {with_article(include[1]['class'])}"
    if tag == "counting":
        n = include[0]["count"]
        return f"a photo of {number_word(n)} {plural(include[0]['class'])}"
    if tag == "colors":
        return f"a photo of {with_article(include[0]['color'])} {include[0]['class']}"
    if tag == "position":
        target, obj = include[0], include[1]
        rel = obj["position"][0]
        return f"a photo of {with_article(obj['class'])} {rel} {with_article(target['class'])}"
    if tag == "color_attr":
        a, b = include
        return (
            f"a photo of {with_article(a['color'])} {a['class']} and "
            f"{with_article(b['color'])} {b['class']}"
        )
    raise ValueError(f"unknown GenEval tag {tag!r}; expected one of {list(GENEVAL_TAGS)}")


def make_record(tag: str, include: Sequence[dict[str, Any]]) -> Record:
    """A full record (``tag, include, exclude?, prompt`` in GenEval's key order)."""
    record: Record = {"tag": tag, "include": [dict(x) for x in include]}
    if tag == "counting":
        record["exclude"] = [{"class": include[0]["class"], "count": include[0]["count"] + 1}]
    record["prompt"] = geneval_prompt(tag, include)
    return record


def _pick(rng: np.random.Generator, options: Sequence[str], k: int) -> list[str]:
    return [options[int(i)] for i in rng.choice(len(options), size=k, replace=False)]


def sample_record(rng: np.random.Generator, tag: str, max_count: int = 4) -> Record:
    """A random record of ``tag`` over this world's classes and colours (GenEval's draws)."""
    if tag == "single_object":
        (a,) = _pick(rng, SHAPES, 1)
        return make_record(tag, [{"class": a, "count": 1}])
    if tag == "two_object":
        a, b = _pick(rng, SHAPES, 2)
        return make_record(tag, [{"class": a, "count": 1}, {"class": b, "count": 1}])
    if tag == "counting":
        (a,) = _pick(rng, SHAPES, 1)
        n = int(rng.integers(2, max_count, endpoint=True))
        return make_record(tag, [{"class": a, "count": n}])
    if tag == "colors":
        (a,) = _pick(rng, SHAPES, 1)
        (c,) = _pick(rng, COLOUR_NAMES, 1)
        return make_record(tag, [{"class": a, "count": 1, "color": c}])
    if tag == "position":
        a, b = _pick(rng, SHAPES, 2)
        (rel,) = _pick(rng, RELATIONS, 1)
        return make_record(
            tag, [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}]
        )
    if tag == "color_attr":
        a, b = _pick(rng, SHAPES, 2)
        ca, cb = _pick(rng, COLOUR_NAMES, 2)
        return make_record(
            tag, [{"class": a, "count": 1, "color": ca}, {"class": b, "count": 1, "color": cb}]
        )
    raise ValueError(f"unknown GenEval tag {tag!r}; expected one of {list(GENEVAL_TAGS)}")


def _relation_ok(objects: Sequence[ShapeObject], rel: str, margin: float) -> bool:
    target, obj = objects[0], objects[1]
    scores = relation_scores(obj.box(512), target.box(512))
    return scores is not None and scores[rel] >= 0.5 + margin


def scene_for_record(
    rng: np.random.Generator,
    record: Record,
    config: SamplerConfig | None = None,
    position_margin: float = POSITION_MARGIN,
) -> Scene:
    """A scene with exactly the record's objects, in its colours, in its relation.

    Objects whose colour the record leaves open get a random colour (one per include, or one
    per object with probability 1/2 for counts above one).
    """
    config = config or SamplerConfig()
    specs: list[tuple[str, str]] = []
    for req in record["include"]:
        count = req["count"]
        if "color" in req:
            colours = [req["color"]] * count
        elif count > 1 and rng.random() < 0.5:
            colours = [COLOUR_NAMES[int(i)] for i in rng.integers(len(COLOUR_NAMES), size=count)]
        else:
            colours = [COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]] * count
        specs.extend((req["class"], c) for c in colours)
    accept = None
    positioned = [r for r in record["include"] if "position" in r]
    if positioned:
        rel = positioned[0]["position"][0]

        def accept(objects: list[ShapeObject]) -> bool:
            return _relation_ok(objects, rel, position_margin)

    objects = place_objects(rng, specs, config, accept=accept, restarts=400)
    return Scene(tuple(objects), sample_ground(rng, config), {"geneval": record})


def sample_geneval_prompt(
    rng: np.random.Generator, tag: str, config: SamplerConfig | None = None
) -> tuple[Record, Scene]:
    """Prompt-only sampling for generation: a record of ``tag`` and a scene that satisfies it."""
    record = sample_record(rng, tag)
    return record, scene_for_record(rng, record, config)


def record_holds(scene: Scene, record: Record, position_margin: float = 0.0) -> bool:
    """Whether the scene's truth satisfies the record under GenEval's rules.

    The truth has no confidences; when several objects of a class could be "the top ``count``",
    the record holds only if every choice satisfies it (colours all equal, relations all hold).
    """
    for req in record["include"]:
        objs = scene.of_shape(req["class"])
        if len(objs) < req["count"]:
            return False
        if "color" in req and any(o.colour != req["color"] for o in objs):
            return False
        if "position" in req:
            rel, i = req["position"]
            targets = scene.of_shape(record["include"][i]["class"])
            for o in objs:
                for t in targets:
                    scores = relation_scores(o.box(512), t.box(512))
                    if scores is None or scores[rel] < 0.5 + position_margin:
                        return False
    for req in record.get("exclude", []):
        if len(scene.of_shape(req["class"])) >= req["count"]:
            return False
    return True


def records_for_scene(
    scene: Scene, tags: Iterable[str] = GENEVAL_TAGS, position_margin: float = POSITION_MARGIN
) -> list[Record]:
    """Every record of the given tags that the scene satisfies unambiguously.

    Colour records need all objects of the class in that colour; position records need one
    object of each class and the relation past ``0.5 + position_margin``; counting records use
    the exact count (2-4).
    """
    tags = tuple(tags)
    counts = scene.counts()
    present = [s for s in SHAPES if counts[s]]
    uniform = {s: next(iter(scene.colours_of(s))) for s in present if len(scene.colours_of(s)) == 1}
    records: list[Record] = []
    if "single_object" in tags:
        records += [make_record("single_object", [{"class": s, "count": 1}]) for s in present]
    pairs = [(a, b) for a in present for b in present if a != b]
    if "two_object" in tags:
        records += [
            make_record("two_object", [{"class": a, "count": 1}, {"class": b, "count": 1}])
            for a, b in pairs
            if SHAPES.index(a) < SHAPES.index(b)
        ]
    if "counting" in tags:
        records += [
            make_record("counting", [{"class": s, "count": counts[s]}])
            for s in present
            if 2 <= counts[s] <= 4
        ]
    if "colors" in tags:
        records += [
            make_record("colors", [{"class": s, "count": 1, "color": c}])
            for s, c in uniform.items()
        ]
    if "position" in tags:
        for a, b in pairs:
            if counts[a] == 1 and counts[b] == 1:
                scores = relation_scores(
                    scene.of_shape(a)[0].box(512), scene.of_shape(b)[0].box(512)
                )
                for rel in RELATIONS:
                    if scores is not None and scores[rel] >= 0.5 + position_margin:
                        include = [
                            {"class": b, "count": 1},
                            {"class": a, "count": 1, "position": [rel, 0]},
                        ]
                        records.append(make_record("position", include))
    if "color_attr" in tags:
        for a, b in pairs:
            if (
                SHAPES.index(a) < SHAPES.index(b)
                and a in uniform
                and b in uniform
                and uniform[a] != uniform[b]
            ):
                include = [
                    {"class": a, "count": 1, "color": uniform[a]},
                    {"class": b, "count": 1, "color": uniform[b]},
                ]
                records.append(make_record("color_attr", include))
    return records


def write_geneval_prompt_dir(
    root: str | os.PathLike[str], index: int, record: Record, images: Sequence[Image.Image]
) -> Path:
    """Write one prompt in GenEval's layout: ``<root>/<index:05d>/metadata.jsonl`` + ``samples/``.

    Returns:
        The prompt folder.
    """
    folder = Path(root) / f"{index:05d}"
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    text = json.dumps(record) + "\n"
    atomic_write(folder / "metadata.jsonl", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    for i, image in enumerate(images):
        atomic_write(
            folder / "samples" / f"{i:04d}.png", lambda tmp, im=image: im.save(tmp, format="PNG")
        )
    return folder
