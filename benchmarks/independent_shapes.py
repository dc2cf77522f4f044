"""The GenEval scorer on scenes from an independent renderer of the shapes world's spec.

The project's own renders are what its detector was written against. This script draws the same
world (../shared/DESIGN.md, "The shapes world") from the spec alone, without
``vqrae.data.shapes``: its geometry, colours, grounds, placement and GenEval records are written
here, and every image draws its own *conventions* at random (seeded), where the spec leaves the
choice open:

* **star**: inner radius 0.38-0.50 of the outer; **cross**: arm width 0.20-0.45 of the size;
  **hexagon**: flat- or pointy-topped; **triangle**: equilateral, or isosceles as tall as wide;
* **size** (15-30% of the width): the longer side of the tight box, or the circumscribed
  circle's diameter (a square then has sides of 0.71 of the size);
* **colours**: a palette of reference RGBs for GenEval's ten names (``spec``: picks of this
  script; ``xkcd``: the xkcd colour survey's; ``css``: CSS named colours, whose brown is
  reddish, pink pale and green dark), each object jittered by up to ``+-J`` per channel, ``J``
  up to 20;
* **edges**: aliased (one sample per pixel) or anti-aliased (2, 4 or 8 samples per axis);
* **ground**: muted (CIE L* 30-78, chroma <= 12, at least 20 CIE76 units from every reference
  of the palette), flat, linear or radial gradient, or smooth blotches, with pixel noise up to
  sigma 8; half the images also get grain (noise over the whole image, sigma up to 4);
* **placement**: objects fully inside, never overlapping: tight boxes apart, circumscribed
  circles apart (boxes may then overlap), or shapes apart (pixel masks; stars interlock); the gap
  is 0.4-4% of the width; half the scenes are *packed* (each object placed as close to an
  earlier one as the rule allows), so objects nearly touch; shapes come within 0, 1 or 2% of
  the width of the canvas edge;
* **scene**: the record's objects, sometimes with distractors of classes the record does not
  name (at most 5 objects, at most 4 of a class); position scenes keep GenEval's relation past
  0.5 by a margin of 0.02 or 0.10.

Records have GenEval's format (``tag, include, exclude?, prompt``, its templates) for the six
tags; relations are computed as GenEval computes them, on the drawn shapes' tight boxes. For
each prompt, ``--samples`` correct images go to ``<out>/<pass>/<size>/correct`` and as many
per applicable corruption (wrong object, wrong count, wrong colour, wrong side, swapped
colours: a clean render of a nearby wrong record, checked to fail the original) to
``.../corrupted``, each in GenEval's layout (``<5-digit index>/metadata.jsonl`` and
``samples/NNNN.png``) with ``truth.jsonl`` beside the prompt folders (each sample's scene and
conventions; GenEval's reader ignores files there). Then ``vqrae geneval score`` scores both
folders and the script prints the share of correct images accepted and of corrupted images
rejected, per tag and per corruption, the failure rate per convention value, and every failure
with its conventions.

``--sweep N`` also detects every object of ``N`` free scenes per pass (1-5 objects of random
classes and colours, the same conventions) with the scorer's detector in this process, and
reports the share *counted* (right class, confidence above GenEval's counting threshold 0.9)
and *named* (right colour) per class and per convention value: a finer probe than verdicts,
since a prompt fails on one object.

Run (the figures in BENCHMARKS.md, "GenEval scorer on an independent renderer")::

    .venv/bin/python benchmarks/independent_shapes.py --out /tmp/indep --prompts 102 \\
        --samples 3 --sizes 128 256 --passes main css naive --sweep 150

``main`` draws the palette per image from ``spec`` and ``xkcd``; ``css`` uses CSS colours only;
``naive`` the first RGB one might type for each name (pure primaries, X11 purple, hot pink,
saddle brown), which the detector's colour prototypes were not chosen on. Passes other than
``main`` use half the prompts. ``--in-process`` scores with the function the command runs
(:func:`vqrae.eval.geneval.eval_geneval`) instead of the ``vqrae`` command.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

# ----------------------------------------------------------------------------- the world's words
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")
COLOUR_NAMES: tuple[str, ...] = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
)
TAGS: tuple[str, ...] = (
    "single_object",
    "two_object",
    "counting",
    "colors",
    "position",
    "color_attr",
)
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
OPPOSITE: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}
NUMBERS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five")
CORRUPTIONS: dict[str, tuple[str, ...]] = {
    "single_object": ("wrong_object",),
    "two_object": ("wrong_object",),
    "counting": ("wrong_count", "wrong_object"),
    "colors": ("wrong_colour", "wrong_object"),
    "position": ("wrong_side", "wrong_object"),
    "color_attr": ("swapped_colours", "wrong_colour", "wrong_object"),
}

RGB = tuple[int, int, int]
#: Reference RGBs for GenEval's ten colour names, three plausible choices.
PALETTES: dict[str, dict[str, RGB]] = {
    # Saturated picks of this script (not the project's references).
    "spec": {
        "red": (225, 25, 30),
        "orange": (255, 140, 0),
        "yellow": (255, 225, 0),
        "green": (30, 160, 50),
        "blue": (25, 80, 225),
        "purple": (128, 40, 170),
        "pink": (255, 120, 180),
        "brown": (140, 80, 30),
        "black": (10, 10, 10),
        "white": (250, 250, 250),
    },
    # The xkcd colour survey's names (https://xkcd.com/color/rgb/).
    "xkcd": {
        "red": (229, 0, 0),
        "orange": (249, 115, 6),
        "yellow": (255, 255, 20),
        "green": (21, 176, 26),
        "blue": (3, 67, 223),
        "purple": (126, 30, 156),
        "pink": (255, 129, 192),
        "brown": (101, 55, 0),
        "black": (0, 0, 0),
        "white": (255, 255, 255),
    },
    # CSS / X11 named colours.
    "css": {
        "red": (255, 0, 0),
        "orange": (255, 165, 0),
        "yellow": (255, 255, 0),
        "green": (0, 128, 0),
        "blue": (0, 0, 255),
        "purple": (128, 0, 128),
        "pink": (255, 192, 203),
        "brown": (165, 42, 42),
        "black": (0, 0, 0),
        "white": (255, 255, 255),
    },
    # The first RGB a programmer might type for each name (a held-out check: the detector's
    # colour names were not tuned on it).
    "naive": {
        "red": (255, 0, 0),
        "orange": (255, 128, 0),
        "yellow": (255, 255, 0),
        "green": (0, 200, 0),
        "blue": (0, 0, 255),
        "purple": (160, 32, 240),
        "pink": (255, 105, 180),
        "brown": (139, 69, 19),
        "black": (0, 0, 0),
        "white": (255, 255, 255),
    },
}
#: Palettes each pass draws from (one per image).
PASSES: dict[str, tuple[str, ...]] = {
    "main": ("spec", "xkcd"),
    "css": ("css",),
    "spec": ("spec",),
    "xkcd": ("xkcd",),
    "naive": ("naive",),
}


def article(phrase: str) -> str:
    """GenEval's article: ``an`` before a vowel letter."""
    return f"an {phrase}" if phrase[0] in "aeiou" else f"a {phrase}"


def plural(name: str) -> str:
    """GenEval's plural: ``es`` after a final ``s``."""
    return f"{name}es" if name.endswith("s") else f"{name}s"


# ----------------------------------------------------------------------------- colour science
def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0-255 ``(..., 3)`` to CIELAB (D65), written out from the CIE formulas."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    d = 6.0 / 29.0
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB ``(..., 3)`` to sRGB 0-255 float, clipped to the gamut."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    d = 6.0 / 29.0
    xyz = np.where(f > d, f**3, 3 * d * d * (f - 4.0 / 29.0)) * np.array([0.95047, 1.0, 1.08883])
    m = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    lin = np.clip(xyz @ m.T, 0, 1)
    c = np.where(lin > 0.0031308, 1.055 * lin ** (1 / 2.4) - 0.055, 12.92 * lin)
    return np.clip(c * 255, 0, 255)


# ----------------------------------------------------------------------------- conventions
@dataclass(frozen=True)
class Conventions:
    """How one image draws what the spec leaves open (see the module docstring)."""

    palette: str
    jitter: int
    star_inner: float
    cross_arm: float
    hexagon: str  # "flat" | "pointy"
    triangle: str  # "equilateral" | "isosceles"
    size_meaning: str  # "box" | "circumcircle"
    supersample: int  # 1: aliased
    ground: str  # "flat" | "linear" | "radial" | "blotches"
    noise: float
    grain: float
    placement: str  # "boxes" | "circles" | "masks"
    packing: str  # "random" | "packed"
    edge: float  # nearest a shape comes to the canvas edge (fraction of the width)
    gap: float  # fraction of the width
    margin: float  # position relation kept past 0.5 by this


def draw_conventions(rng: np.random.Generator, palettes: Sequence[str]) -> Conventions:
    """One image's conventions, uniformly over the options."""
    return Conventions(
        palette=str(palettes[int(rng.integers(len(palettes)))]),
        jitter=int(rng.integers(0, 20, endpoint=True)),
        star_inner=round(float(rng.uniform(0.38, 0.5)), 3),
        cross_arm=round(float(rng.uniform(0.2, 0.45)), 3),
        hexagon=("flat", "pointy")[int(rng.integers(2))],
        triangle=("equilateral", "isosceles")[int(rng.integers(2))],
        size_meaning=("box", "circumcircle")[int(rng.integers(2))],
        supersample=(1, 2, 4, 8)[int(rng.integers(4))],
        ground=("flat", "linear", "radial", "blotches")[int(rng.integers(4))],
        noise=round(float(rng.uniform(0.0, 8.0)), 2),
        grain=round(float(rng.uniform(0.0, 4.0)), 2) if rng.random() < 0.5 else 0.0,
        placement=("boxes", "circles", "masks")[int(rng.integers(3))],
        packing=("random", "packed")[int(rng.integers(2))],
        edge=(0.0, 0.01, 0.02)[int(rng.integers(3))],
        gap=round(float(rng.uniform(0.004, 0.04)), 4),
        margin=(0.02, 0.1)[int(rng.integers(2))],
    )


# ----------------------------------------------------------------------------- geometry
def _regular(n: int, start: float) -> np.ndarray:
    """``n`` points on the unit circle from angle ``start`` (radians), y down."""
    t = start + np.arange(n) * 2 * math.pi / n
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def shape_outline(shape: str, conv: Conventions) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices (K, 2), natural centre (2,))`` of an upright shape, y down, any scale."""
    up = -math.pi / 2
    if shape == "circle":
        return _regular(96, 0.0), np.zeros(2)
    if shape == "square":
        return _regular(4, math.pi / 4), np.zeros(2)
    if shape == "triangle":
        if conv.triangle == "equilateral":
            return _regular(3, up), np.zeros(2)
        return np.array([[0.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]), np.zeros(2)
    if shape == "star":
        t = up + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, conv.star_inner)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1), np.zeros(2)
    if shape == "hexagon":
        return _regular(6, 0.0 if conv.hexagon == "flat" else up), np.zeros(2)
    if shape == "cross":
        a = conv.cross_arm / 2  # half the arm width, the cross spanning [-0.5, 0.5]
        h = 0.5
        pts = [
            (-a, -h), (a, -h), (a, -a), (h, -a), (h, a), (a, a),
            (a, h), (-a, h), (-a, a), (-h, a), (-h, -a), (-a, -a),
        ]  # fmt: skip
        return np.array(pts, dtype=np.float64), np.zeros(2)
    raise ValueError(f"unknown shape {shape!r}")


def place_outline(shape: str, conv: Conventions, centre: np.ndarray, size: float) -> np.ndarray:
    """The shape's vertices in image-width units, for a size (fraction of the width)."""
    pts, natural = shape_outline(shape, conv)
    if conv.size_meaning == "box":
        lo, hi = pts.min(0), pts.max(0)
        scale = size / float((hi - lo).max())
        return (pts - (lo + hi) / 2) * scale + centre
    radius = float(np.linalg.norm(pts - natural, axis=1).max())
    return (pts - natural) * (size / 2 / radius) + centre


@dataclass(frozen=True)
class Obj:
    """One drawn object: class, colour name and RGB, vertices in width units."""

    shape: str
    colour: str
    rgb: RGB
    vertices: tuple[tuple[float, float], ...]

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The tight box ``(x0, y0, x1, y1)`` in width units."""
        v = np.array(self.vertices)
        return (
            float(v[:, 0].min()),
            float(v[:, 1].min()),
            float(v[:, 0].max()),
            float(v[:, 1].max()),
        )

    def circle(self) -> tuple[np.ndarray, float]:
        """Centre of the box and the radius of the circle around it that holds the shape."""
        v = np.array(self.vertices)
        c = (v.min(0) + v.max(0)) / 2
        return c, float(np.linalg.norm(v - c, axis=1).max())


def relation_values(a: Sequence[float], b: Sequence[float]) -> dict[str, float] | None:
    """GenEval's relation components of box ``a`` relative to box ``b`` (DESIGN.md's rule)."""
    ca = np.array([(a[0] + a[2]) / 2, (a[1] + a[3]) / 2])
    cb = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
    dims = np.array([abs(a[2] - a[0]) + abs(b[2] - b[0]), abs(a[3] - a[1]) + abs(b[3] - b[1])])
    off = ca - cb
    shrunk = np.maximum(np.abs(off) - 0.1 * dims, 0) * np.sign(off)
    if np.all(np.abs(shrunk) < 1e-6):  # GenEval's 1e-3 pixels, in width units
        return None
    dx, dy = shrunk / np.linalg.norm(off)
    return {"left of": -dx, "right of": dx, "above": -dy, "below": dy}


# ----------------------------------------------------------------------------- records
Record = dict[str, Any]


def make_record(tag: str, include: list[dict[str, Any]]) -> Record:
    """A GenEval record with its prompt from GenEval's templates (key order as GenEval's)."""
    rec: Record = {"tag": tag, "include": include}
    a = include[0]
    if tag == "single_object":
        prompt = f"a photo of {article(a['class'])}"
    elif tag == "two_object":
        prompt = f"a photo of {article(a['class'])} and {article(include[1]['class'])}"
    elif tag == "counting":
        rec["exclude"] = [{"class": a["class"], "count": a["count"] + 1}]
        prompt = f"a photo of {NUMBERS[a['count']]} {plural(a['class'])}"
    elif tag == "colors":
        prompt = f"a photo of {article(a['color'])} {a['class']}"
    elif tag == "position":
        b = include[1]
        prompt = f"a photo of {article(b['class'])} {b['position'][0]} {article(a['class'])}"
    elif tag == "color_attr":
        b = include[1]
        prompt = (
            f"a photo of {article(a['color'])} {a['class']} and {article(b['color'])} {b['class']}"
        )
    else:
        raise ValueError(f"unknown tag {tag!r}")
    rec["prompt"] = prompt
    return rec


def _choose(rng: np.random.Generator, items: Sequence[str], k: int) -> list[str]:
    """``k`` distinct items drawn uniformly."""
    return [items[int(i)] for i in rng.choice(len(items), size=k, replace=False)]


def sample_record(rng: np.random.Generator, tag: str) -> Record:
    """A record of ``tag`` drawn as GenEval's ``create_prompts.py`` draws (this world's classes)."""
    if tag == "single_object":
        return make_record(tag, [{"class": _choose(rng, SHAPES, 1)[0], "count": 1}])
    if tag == "two_object":
        a, b = _choose(rng, SHAPES, 2)
        return make_record(tag, [{"class": a, "count": 1}, {"class": b, "count": 1}])
    if tag == "counting":
        n = int(rng.integers(2, 4, endpoint=True))
        return make_record(tag, [{"class": _choose(rng, SHAPES, 1)[0], "count": n}])
    if tag == "colors":
        c = _choose(rng, COLOUR_NAMES, 1)[0]
        return make_record(tag, [{"class": _choose(rng, SHAPES, 1)[0], "count": 1, "color": c}])
    if tag == "position":
        a, b = _choose(rng, SHAPES, 2)
        rel = _choose(rng, RELATIONS, 1)[0]
        return make_record(
            tag, [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}]
        )
    a, b = _choose(rng, SHAPES, 2)
    ca, cb = _choose(rng, COLOUR_NAMES, 2)
    return make_record(
        tag, [{"class": a, "count": 1, "color": ca}, {"class": b, "count": 1, "color": cb}]
    )


def corrupt(rng: np.random.Generator, record: Record, kind: str) -> list[dict[str, Any]]:
    """The include list of a nearby wrong record (see the module docstring)."""
    inc = [dict(r) for r in record["include"]]
    k = int(rng.integers(len(inc)))
    if kind == "wrong_object":
        named = {r["class"] for r in inc}
        inc[k]["class"] = _choose(rng, [s for s in SHAPES if s not in named], 1)[0]
    elif kind == "wrong_count":
        n = inc[0]["count"]
        inc[0]["count"] = n - 1 if n == 4 or rng.random() < 0.5 else n + 1
    elif kind == "wrong_colour":
        named = {r.get("color") for r in inc}
        inc[k]["color"] = _choose(rng, [c for c in COLOUR_NAMES if c not in named], 1)[0]
    elif kind == "wrong_side":
        rel, i = inc[1]["position"]
        inc[1]["position"] = [OPPOSITE[rel], i]
    elif kind == "swapped_colours":
        inc[0]["color"], inc[1]["color"] = inc[1]["color"], inc[0]["color"]
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    return inc


def truth_holds(objects: Sequence[Obj], record: Record, margin: float = 0.0) -> bool:
    """Whether the drawn objects satisfy the record under GenEval's rules, for every choice of
    the "top ``count``" objects (the truth has no confidences)."""
    for req in record["include"]:
        mine = [o for o in objects if o.shape == req["class"]]
        if len(mine) < req["count"]:
            return False
        if "color" in req and any(o.colour != req["color"] for o in mine):
            return False
        if "position" in req:
            rel, i = req["position"]
            targets = [o for o in objects if o.shape == record["include"][i]["class"]]
            for o in mine:
                for t in targets:
                    v = relation_values(o.box, t.box)
                    if v is None or v[rel] <= 0.5 + margin:
                        return False
    return all(
        sum(o.shape == req["class"] for o in objects) < req["count"]
        for req in record.get("exclude", [])
    )


# ----------------------------------------------------------------------------- scenes
class PlacementFailed(RuntimeError):
    """No placement satisfied the constraints."""


def _mask(vertices: np.ndarray, grid: int) -> np.ndarray:
    """The shape rasterised on a ``grid x grid`` map of the canvas (placement checks)."""
    img = Image.new("1", (grid, grid), 0)
    ImageDraw.Draw(img).polygon([(float(x * grid), float(y * grid)) for x, y in vertices], fill=1)
    return np.asarray(img, dtype=bool)


def _apart(new: Obj, others: Sequence[Obj], conv: Conventions, masks: list[np.ndarray]) -> bool:
    """Whether ``new`` keeps the gap to every placed object under the placement rule."""
    if conv.placement == "boxes":
        a = new.box
        for o in others:
            b = o.box
            if not (
                a[2] + conv.gap <= b[0]
                or b[2] + conv.gap <= a[0]
                or a[3] + conv.gap <= b[1]
                or b[3] + conv.gap <= a[1]
            ):
                return False
        return True
    if conv.placement == "circles":
        ca, ra = new.circle()
        return all(
            np.linalg.norm(ca - cb) >= ra + rb + conv.gap for cb, rb in (o.circle() for o in others)
        )
    grid = 256
    mine = _mask(np.array(new.vertices), grid)
    grow = max(1, int(round(conv.gap * grid)))
    mine = ndimage.binary_dilation(mine, iterations=grow)
    return not any((mine & m).any() for m in masks)


def _make(
    rng: np.random.Generator,
    shape: str,
    colour: str,
    conv: Conventions,
    centre: np.ndarray,
    size: float,
) -> Obj:
    """One object of the palette's colour, jittered, at ``centre`` with ``size``."""
    base = np.array(PALETTES[conv.palette][colour])
    rgb = np.clip(base + rng.integers(-conv.jitter, conv.jitter, 3, endpoint=True), 0, 255)
    verts = place_outline(shape, conv, centre, size)
    return Obj(
        shape, colour, (int(rgb[0]), int(rgb[1]), int(rgb[2])),
        tuple((float(x), float(y)) for x, y in verts),
    )  # fmt: skip


def _inside(obj: Obj, conv: Conventions) -> bool:
    """Whether the object's box keeps ``conv.edge`` from every side of the canvas."""
    x0, y0, x1, y1 = obj.box
    return min(x0, y0) >= conv.edge and max(x1, y1) <= 1.0 - conv.edge


def _packed_centre(
    rng: np.random.Generator, shape: str, conv: Conventions, size: float, near: Obj
) -> np.ndarray:
    """The centre nearest to ``near``, along a random direction, at which the new object is
    apart from it (bisection on the distance)."""
    theta = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(theta), math.sin(theta)])
    origin, _ = near.circle()
    masks = [_mask(np.array(near.vertices), 256)] if conv.placement == "masks" else []
    lo, hi = 0.0, 0.6
    for _ in range(12):
        mid = (lo + hi) / 2
        trial = Obj(
            shape,
            "",
            (0, 0, 0),
            tuple(map(tuple, place_outline(shape, conv, origin + mid * direction, size))),
        )
        if _apart(trial, [near], conv, masks):
            hi = mid
        else:
            lo = mid
    return origin + hi * direction


def place(
    rng: np.random.Generator,
    specs: Sequence[tuple[str, str]],
    conv: Conventions,
    accept: Callable[[list[Obj]], bool] | None = None,
    restarts: int = 300,
) -> list[Obj]:
    """Objects ``(class, colour name)`` at random sizes and places, by the conventions' rules
    (``packed``: each object after the first as close to an earlier one as the rule allows)."""
    for _ in range(restarts):
        objs: list[Obj] = []
        masks: list[np.ndarray] = []
        for shape, colour in specs:
            for _try in range(200):
                size = float(rng.uniform(0.15, 0.30))
                if conv.packing == "packed" and objs:
                    near = objs[int(rng.integers(len(objs)))]
                    centre = _packed_centre(rng, shape, conv, size, near)
                else:
                    centre = rng.uniform(0.0, 1.0, size=2)
                obj = _make(rng, shape, colour, conv, centre, size)
                if _inside(obj, conv) and _apart(obj, objs, conv, masks):
                    objs.append(obj)
                    if conv.placement == "masks":
                        masks.append(_mask(np.array(obj.vertices), 256))
                    break
            else:
                break
        if len(objs) == len(specs) and (accept is None or accept(objs)):
            return objs
    raise PlacementFailed(f"could not place {list(specs)} under {conv}")


def scene_for(
    rng: np.random.Generator,
    include: Sequence[dict[str, Any]],
    conv: Conventions,
    avoid: set[str],
    check: Callable[[list[Obj]], bool],
) -> list[Obj]:
    """A scene of the include list's objects (uncoloured ones in random colours), sometimes with
    distractors of classes outside ``avoid``, that passes ``check``."""
    specs: list[tuple[str, str]] = []
    for req in include:
        if "color" in req:
            specs += [(req["class"], req["color"])] * req["count"]
        elif req["count"] > 1 and rng.random() < 0.5:
            specs += [(req["class"], _choose(rng, COLOUR_NAMES, 1)[0]) for _ in range(req["count"])]
        else:
            specs += [(req["class"], _choose(rng, COLOUR_NAMES, 1)[0])] * req["count"]
    free = [s for s in SHAPES if s not in avoid]
    room = 5 - len(specs)
    if room > 0 and free and rng.random() < 0.5:
        for shape in _choose(rng, free, min(int(rng.integers(1, room, endpoint=True)), len(free))):
            specs.append((shape, _choose(rng, COLOUR_NAMES, 1)[0]))
    return place(rng, specs, conv, accept=check)


# ----------------------------------------------------------------------------- rendering
def _ground(rng: np.random.Generator, conv: Conventions, size: int) -> np.ndarray:
    """A muted ground ``(size, size, 3)`` float RGB, never near the palette's references."""
    refs = srgb_to_lab(np.array(list(PALETTES[conv.palette].values()), dtype=np.float64))
    for _ in range(1000):
        labs = []
        lab = np.array([rng.uniform(30, 78), 0.0, 0.0])
        chroma, hue = rng.uniform(0, 12), rng.uniform(0, 2 * math.pi)
        lab[1:] = chroma * math.cos(hue), chroma * math.sin(hue)
        labs.append(lab)
        other = lab + np.array([rng.uniform(-10, 10), rng.uniform(-5, 5), rng.uniform(-5, 5)])
        other[0] = np.clip(other[0], 30, 78)
        labs.append(other)
        rgbs = [lab_to_srgb(x) for x in labs]
        if all(np.linalg.norm(refs - srgb_to_lab(c), axis=1).min() >= 20 for c in rgbs):
            break
    else:
        raise PlacementFailed("no muted ground away from the palette")
    a, b = rgbs
    u = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(u, u, indexing="ij")
    if conv.ground == "flat":
        t = np.zeros((size, size))
    elif conv.ground == "linear":
        th = rng.uniform(0, 2 * math.pi)
        p = np.cos(th) * xx + np.sin(th) * yy
        t = (p - p.min()) / max(p.max() - p.min(), 1e-9)
    elif conv.ground == "radial":
        cx, cy = rng.uniform(0.2, 0.8, 2)
        r = np.hypot(xx - cx, yy - cy)
        t = r / r.max()
    else:  # smooth blotches: a coarse random field, bicubic-upsampled
        coarse = rng.uniform(0, 255, size=(4, 4)).astype(np.float32)
        field = np.asarray(
            Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC),
            dtype=np.float64,
        )
        t = np.clip((field - field.min()) / max(np.ptp(field), 1e-9), 0, 1)
    image = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    if conv.noise > 0:
        image = image + rng.normal(0, conv.noise, size=image.shape)
    return image


def _coverage(vertices: np.ndarray, size: int, ss: int) -> tuple[int, int, np.ndarray]:
    """``(x0, y0, alpha)``: the shape's pixel coverage over its box (plus a pixel)."""
    px = vertices * size
    x0, y0 = (
        max(int(math.floor(px[:, 0].min())) - 1, 0),
        max(int(math.floor(px[:, 1].min())) - 1, 0),
    )
    x1 = min(int(math.ceil(px[:, 0].max())) + 1, size)
    y1 = min(int(math.ceil(px[:, 1].max())) + 1, size)
    w, h = x1 - x0, y1 - y0
    img = Image.new("L", (w * ss, h * ss), 0)
    # Pixel i spans [i, i + 1); PIL puts integer coordinates at pixel centres, hence the -0.5 (so
    # one sample per pixel fills exactly the pixels whose centre lies inside).
    pts = [(float((x - x0) * ss - 0.5), float((y - y0) * ss - 0.5)) for x, y in px]
    ImageDraw.Draw(img).polygon(pts, fill=255)
    if ss > 1:
        img = img.resize((w, h), Image.Resampling.BOX)
    return x0, y0, np.asarray(img, dtype=np.float64) / 255.0


def render(objs: Sequence[Obj], conv: Conventions, size: int, ground_seed: int) -> Image.Image:
    """The scene at ``size x size`` pixels."""
    image = _ground(np.random.default_rng(ground_seed), conv, size)
    for o in objs:
        x0, y0, alpha = _coverage(np.array(o.vertices), size, conv.supersample)
        h, w = alpha.shape
        a = alpha[..., None]
        patch = image[y0 : y0 + h, x0 : x0 + w]
        image[y0 : y0 + h, x0 : x0 + w] = patch * (1 - a) + np.array(o.rgb, np.float64) * a
    if conv.grain > 0:
        image = image + np.random.default_rng(ground_seed + 1).normal(0, conv.grain, image.shape)
    return Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------- the benchmark
@dataclass
class Item:
    """One sample: where it is, what it shows and how it was drawn."""

    file: str
    tag: str
    corruption: str | None
    size: int
    conventions: dict[str, Any]
    objects: list[dict[str, Any]]


def _position_check(
    include: Sequence[dict[str, Any]], margin: float
) -> Callable[[list[Obj]], bool]:
    """A check that the objects satisfy the include list past the margin."""

    def check(objs: list[Obj]) -> bool:
        """Whether the objects satisfy the include list."""
        rec = {"include": list(include)}
        return truth_holds(objs, rec, margin)

    return check


def build(
    out: Path,
    n_prompts: int,
    samples: int,
    sizes: Sequence[int],
    palettes: Sequence[str],
    seed: int,
) -> dict[int, list[Item]]:
    """Write the correct and corrupted folders for every size; returns the items by size."""
    items: dict[int, list[Item]] = {s: [] for s in sizes}
    index = {(s, part): 0 for s in sizes for part in ("correct", "corrupted")}
    for p in range(n_prompts):
        tag = TAGS[p % len(TAGS)]
        rng = np.random.default_rng([seed, p])
        record = sample_record(rng, tag)
        named = {r["class"] for r in record["include"]}
        jobs: list[tuple[str | None, list[dict[str, Any]]]] = [(None, record["include"])]
        jobs += [(kind, corrupt(rng, record, kind)) for kind in CORRUPTIONS[tag]]
        for kind, include in jobs:
            part = "correct" if kind is None else "corrupted"
            drawn: list[tuple[Conventions, list[Obj], int]] = []
            for _ in range(samples):
                conv = draw_conventions(rng, palettes)
                avoid = named | {r["class"] for r in include}
                margin = conv.margin if any("position" in r for r in include) else 0.0
                want = _position_check(include, margin)

                def check(
                    objs: list[Obj],
                    want: Callable[[list[Obj]], bool] = want,
                    record: Record = record,
                    wrong: bool = kind is not None,
                ) -> bool:
                    """The wanted relation holds, and the original record holds exactly
                    when the image is meant to be correct."""
                    return want(objs) and truth_holds(objs, record) != wrong

                objs = scene_for(rng, include, conv, avoid, check)
                drawn.append((conv, objs, int(rng.integers(2**31))))
            for size in sizes:
                folder = out / str(size) / part / f"{index[(size, part)]:05d}"
                index[(size, part)] += 1
                (folder / "samples").mkdir(parents=True, exist_ok=True)
                (folder / "metadata.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
                for j, (conv, objs, gseed) in enumerate(drawn):
                    path = folder / "samples" / f"{j:04d}.png"
                    render(objs, conv, size, gseed).save(path)
                    items[size].append(
                        Item(
                            str(path), tag, kind, size, asdict(conv),
                            [{"shape": o.shape, "colour": o.colour, "rgb": o.rgb,
                              "box": [round(v * size, 2) for v in o.box]} for o in objs],
                        )
                    )  # fmt: skip
    for size in sizes:
        for part in ("correct", "corrupted"):
            with open(out / str(size) / part / "truth.jsonl", "w", encoding="utf-8") as fh:
                for it in items[size]:
                    if (it.corruption is None) == (part == "correct"):
                        fh.write(json.dumps(asdict(it)) + "\n")
    return items


def score(folder: Path, vqrae_cli: str | None) -> dict[str, dict[str, Any]]:
    """Run ``vqrae geneval score`` on a folder (or, with ``vqrae_cli=None``, the function it
    runs, in this process); returns its results lines by filename."""
    results = folder / "results.jsonl"
    if vqrae_cli is None:
        from vqrae.eval.geneval import eval_geneval

        eval_geneval(folder, results)
        lines = [json.loads(x) for x in results.read_text(encoding="utf-8").splitlines() if x]
        return {r["filename"]: r for r in lines}
    proc = subprocess.run(
        [vqrae_cli, "geneval", "score", str(folder), "--out", str(results)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"vqrae geneval score failed on {folder}:\n{proc.stderr}")
    lines = [json.loads(x) for x in results.read_text(encoding="utf-8").splitlines() if x.strip()]
    return {r["filename"]: r for r in lines}


def _rate(ok: int, n: int) -> str:
    """``ok / n`` as a percentage with the counts."""
    return f"{100.0 * ok / n:5.1f}% ({ok}/{n})" if n else "   -"


def report(items: Sequence[Item], verdicts: dict[str, dict[str, Any]], title: str) -> list[str]:
    """Printable lines: rates per tag and per corruption, failures per convention value, and
    each failure with its reason and conventions."""
    lines = [f"== {title}"]
    good = [it for it in items if (verdicts[it.file]["correct"]) == (it.corruption is None)]
    ok = {it.file for it in good}
    correct = [it for it in items if it.corruption is None]
    corrupted = [it for it in items if it.corruption is not None]
    lines.append(
        f"correct accepted {_rate(sum(i.file in ok for i in correct), len(correct))}   "
        f"corrupted rejected {_rate(sum(i.file in ok for i in corrupted), len(corrupted))}"
    )
    lines.append(f"{'tag':<14} {'correct accepted':>20} {'corrupted rejected':>20}")
    for tag in TAGS:
        c = [i for i in correct if i.tag == tag]
        x = [i for i in corrupted if i.tag == tag]
        lines.append(
            f"{tag:<14} {_rate(sum(i.file in ok for i in c), len(c)):>20} "
            f"{_rate(sum(i.file in ok for i in x), len(x)):>20}"
        )
    kinds = sorted({i.corruption for i in corrupted if i.corruption})
    for kind in kinds:
        x = [i for i in corrupted if i.corruption == kind]
        lines.append(f"  {kind:<16} rejected {_rate(sum(i.file in ok for i in x), len(x))}")
    bad = [it for it in items if it.file not in ok]
    if bad:
        lines.append("failure rate per convention value (values with a failure):")
        for key in Conventions.__dataclass_fields__:
            if key in ("star_inner", "cross_arm", "noise", "grain", "gap", "jitter"):
                continue
            for value in sorted({str(i.conventions[key]) for i in items}):
                n = [i for i in items if str(i.conventions[key]) == value]
                f = [i for i in n if i.file not in ok]
                if f:
                    lines.append(f"  {key}={value}: {len(f)}/{len(n)} failed")
        lines.append("failures:")
        for it in bad:
            v = verdicts[it.file]
            c = it.conventions
            lines.append(
                f"  {Path(it.file).relative_to(Path(it.file).parents[4])} {it.tag}"
                f" {it.corruption or 'correct'}: {v['prompt']!r} -> reason {v['reason']!r}"
                f" colours {v.get('colors', '')} details {v['details']}"
            )
            lines.append(f"      truth {[(o['shape'], o['colour'], o['rgb']) for o in it.objects]}")
            lines.append(f"      conventions {c}")
    return lines


def sweep(n: int, sizes: Sequence[int], palettes: Sequence[str], seed: int) -> list[str]:
    """Detect every object of ``n`` free scenes (1-5 objects of random classes and colours) with
    the project's detector; report per class and per convention value the share of objects
    *counted* (found with the right class and a confidence above GenEval's counting threshold
    0.9) and *named* (the right colour), and each miss."""
    from vqrae.eval.shapes_detector import ShapesDetector

    detector = ShapesDetector()
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rng = np.random.default_rng([seed, 77, i])
        conv = draw_conventions(rng, palettes)
        k = int(rng.integers(1, 5, endpoint=True))
        specs = [(_choose(rng, SHAPES, 1)[0], _choose(rng, COLOUR_NAMES, 1)[0]) for _ in range(k)]
        while max(sum(a == b for a, _ in specs) for b, _ in specs) > 4:
            specs.pop()
        objs = place(rng, specs, conv)
        gseed = int(rng.integers(2**31))
        for size in sizes:
            found = detector.detect(render(objs, conv, size, gseed))
            for o in objs:
                box = np.array(o.box) * size
                centre = (box[:2] + box[2:]) / 2
                best = min(
                    found,
                    key=lambda d: float(np.hypot(*(np.add(d.box[:2], d.box[2:]) / 2 - centre))),
                    default=None,
                )
                near = best is not None and float(
                    np.hypot(*(np.add(best.box[:2], best.box[2:]) / 2 - centre))
                ) < 0.25 * (box[2] - box[0])
                rows.append(
                    {
                        "scene": i,
                        "size": size,
                        "shape": o.shape,
                        "colour": o.colour,
                        "rgb": o.rgb,
                        "conv": asdict(conv),
                        "counted": bool(near and best.label == o.shape and best.confidence > 0.9),
                        "named": bool(near and best.colour == o.colour),
                        "got": None
                        if not near
                        else (best.label, best.colour, round(float(best.confidence), 3)),
                    }
                )

    def share(sel: list[dict[str, Any]], key: str) -> str:
        """``"ok/n"`` of the rows where ``key`` holds."""
        return f"{sum(r[key] for r in sel)}/{len(sel)}"

    lines = [
        f"all {len(rows)} objects: counted {share(rows, 'counted')}, named {share(rows, 'named')}"
    ]
    for shape in SHAPES:
        sel = [r for r in rows if r["shape"] == shape]
        lines.append(
            f"  {shape:<9} counted {share(sel, 'counted'):>9}  named {share(sel, 'named')}"
        )
    misses = [r for r in rows if not (r["counted"] and r["named"])]
    for key in Conventions.__dataclass_fields__:
        if key in ("star_inner", "cross_arm", "noise", "grain", "gap", "jitter"):
            continue
        for value in sorted({str(r["conv"][key]) for r in rows}):
            sel = [r for r in rows if str(r["conv"][key]) == value]
            bad = [r for r in sel if not (r["counted"] and r["named"])]
            if bad:
                lines.append(f"  {key}={value}: {len(bad)}/{len(sel)} missed")
    for r in misses:
        lines.append(
            f"  miss scene {r['scene']} {r['size']} px {r['colour']} {r['shape']} {r['rgb']}"
            f" -> {r['got']}; conventions {r['conv']}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build, score and report (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for images and results")
    parser.add_argument(
        "--prompts", type=int, default=102, help="prompts per pass (six tags in turn)"
    )
    parser.add_argument("--samples", type=int, default=3, help="images per prompt and corruption")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--passes", nargs="+", default=["main", "css"], choices=sorted(PASSES))
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--vqrae", default=str(Path(sys.executable).with_name("vqrae")),
                        help="the vqrae command")  # fmt: skip
    parser.add_argument("--max-failures", type=int, default=40, help="failures listed per run")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="score with vqrae.eval.geneval.eval_geneval here instead of the vqrae command",
    )
    parser.add_argument(
        "--sweep",
        type=int,
        default=0,
        help="also detect the objects of this many free scenes per pass, one by one",
    )
    args = parser.parse_args(argv)
    summary: list[str] = []
    for k, name in enumerate(args.passes):
        root = args.out / name
        if root.exists():
            shutil.rmtree(root)
        t0 = time.time()
        n = args.prompts if name == "main" else max(6, args.prompts // 2)
        if args.prompts > 0:
            items = build(root, n, args.samples, args.sizes, PASSES[name], args.seed + 1000 * k)
            t1 = time.time()
            for size in args.sizes:
                verdicts: dict[str, dict[str, Any]] = {}
                for part in ("correct", "corrupted"):
                    cli = None if args.in_process else args.vqrae
                    verdicts.update(score(root / str(size) / part, cli))
                title = f"pass {name} ({'/'.join(PASSES[name])}), {size} px"
                lines = report(items[size], verdicts, title)
                cut = next((i for i, x in enumerate(lines) if x == "failures:"), len(lines))
                print("\n".join(lines[: cut + 1 + 3 * args.max_failures]), flush=True)
                summary.append(f"{name:>5} {size:>4} px: {lines[1]}")
            print(f"({name}: rendered in {t1 - t0:.0f} s, scored in {time.time() - t1:.0f} s)")
        if args.sweep:
            lines = sweep(args.sweep, args.sizes, PASSES[name], args.seed + 1000 * k)
            print("\n".join([f"== sweep, pass {name}", *lines]), flush=True)
            summary += [f"{name:>5} sweep: {x}" for x in lines if x.startswith("all ")]
    print("\n".join(["== summary", *summary]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
