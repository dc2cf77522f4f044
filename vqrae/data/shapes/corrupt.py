"""Deliberately wrong scenes for a GenEval record: what a scorer must reject.

Each corruption changes the record into a nearby one that the original does not accept, and
draws a fresh scene for it, so the image is a clean render of the wrong thing:

* ``wrong_object``: one named class replaced by a class the record does not name;
* ``wrong_count``: a count off by one (down, or up when there is room; counting only);
* ``wrong_colour``: one named colour replaced by a colour the record does not name;
* ``wrong_side``: the relation replaced by its opposite (position only);
* ``swapped_colours``: the two named colours exchanged (color_attr only).
"""

from __future__ import annotations

import copy

import numpy as np

from vqrae.data.shapes.colour import COLOUR_NAMES
from vqrae.data.shapes.geneval_prompts import Record, scene_for_record
from vqrae.data.shapes.relations import OPPOSITE
from vqrae.data.shapes.sampler import SamplerConfig
from vqrae.data.shapes.scene import Scene
from vqrae.data.shapes.vocab import SHAPES

__all__ = ["CORRUPTIONS", "applicable_corruptions", "corrupt_record", "corrupt_scene"]

CORRUPTIONS: tuple[str, ...] = (
    "wrong_object",
    "wrong_count",
    "wrong_colour",
    "wrong_side",
    "swapped_colours",
)
_BY_TAG: dict[str, tuple[str, ...]] = {
    "single_object": ("wrong_object",),
    "two_object": ("wrong_object",),
    "counting": ("wrong_count", "wrong_object"),
    "colors": ("wrong_colour", "wrong_object"),
    "position": ("wrong_side", "wrong_object"),
    "color_attr": ("swapped_colours", "wrong_colour", "wrong_object"),
}


def applicable_corruptions(record: Record) -> tuple[str, ...]:
    """The corruptions that make sense for the record's tag."""
    return _BY_TAG[record["tag"]]


def corrupt_record(rng: np.random.Generator, record: Record, kind: str) -> Record:
    """The nearby wrong record (its ``include`` only matters; ``exclude`` and prompt dropped)."""
    if kind not in applicable_corruptions(record):
        raise ValueError(f"corruption {kind!r} does not apply to tag {record['tag']!r}")
    include = copy.deepcopy(record["include"])
    k = int(rng.integers(len(include)))
    if kind == "wrong_object":
        named = {r["class"] for r in include}
        others = [s for s in SHAPES if s not in named]
        include[k]["class"] = others[int(rng.integers(len(others)))]
    elif kind == "wrong_count":
        n = include[0]["count"]
        include[0]["count"] = n - 1 if n == 5 or (n > 1 and rng.random() < 0.5) else n + 1
    elif kind == "wrong_colour":
        named = {r.get("color") for r in include}
        others = [c for c in COLOUR_NAMES if c not in named]
        include[k]["color"] = others[int(rng.integers(len(others)))]
    elif kind == "wrong_side":
        for r in include:
            if "position" in r:
                r["position"] = [OPPOSITE[r["position"][0]], r["position"][1]]
    elif kind == "swapped_colours":
        include[0]["color"], include[1]["color"] = include[1]["color"], include[0]["color"]
    return {"tag": record["tag"], "include": include}


def corrupt_scene(
    rng: np.random.Generator, record: Record, kind: str, config: SamplerConfig | None = None
) -> Scene:
    """A clean scene of the wrong record for ``kind`` (see the module docstring)."""
    wrong = corrupt_record(rng, record, kind)
    scene = scene_for_record(rng, wrong, config)
    return Scene(scene.objects, scene.ground, {"geneval": record, "corruption": kind})
