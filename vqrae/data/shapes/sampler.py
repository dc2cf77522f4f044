"""Seeded scene sampling: which objects, where, in which colours, on which ground.

Rules (the world's spec): 1-4 objects of a class, at most 5 per scene; sizes (the longer side of
an object's box) 15-30% of the width; boxes never overlap and keep a gap between them; every
object lies fully inside the canvas; colours are GenEval's ten with a small jitter; grounds are
muted (a low-chroma gradient with pixel noise) and never near any of the ten colours.

Every function takes a ``numpy.random.Generator``, so a seed fixes the scene; see
:mod:`vqrae.data.shapes.splits` for the seeds of the train / eval splits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vqrae.data.shapes.colour import (
    COLOUR_NAMES,
    COLOURS,
    REFERENCE_LAB,
    delta_e,
    lab_to_srgb,
    srgb_to_lab,
)
from vqrae.data.shapes.geometry import extent
from vqrae.data.shapes.scene import Ground, Scene, ShapeObject
from vqrae.data.shapes.vocab import SHAPES

__all__ = [
    "PlacementError",
    "SamplerConfig",
    "boxes_apart",
    "jitter_colour",
    "place_objects",
    "sample_ground",
    "sample_scene",
]


class PlacementError(RuntimeError):
    """The objects asked for could not be placed under the constraints."""


@dataclass(frozen=True)
class SamplerConfig:
    """Constraints of the world (fractions are of the image width).

    Attributes:
        min_kinds: Fewest distinct classes in a sampled scene.
        max_kinds: Most distinct classes in a sampled scene.
        max_per_kind: Most objects of one class.
        max_objects: Most objects in a scene.
        min_size: Smallest object size (longer box side).
        max_size: Largest object size.
        gap: Smallest distance between two objects' boxes (along x or y).
        margin: Smallest distance between a box and the canvas edge.
        colour_jitter: Largest change of each RGB channel from the reference (0-255 units).
        same_colour_prob: Chance that all objects of a class share one colour.
        ground_lightness: Range of the ground's CIE L*.
        ground_chroma: Largest chroma of the ground (low: muted).
        ground_min_delta_e: Smallest CIE76 distance from the ground to any reference colour.
        ground_max_noise: Largest standard deviation of the ground's pixel noise (0-255 units).
        max_tries: Attempts per object before a placement restarts.
    """

    min_kinds: int = 1
    max_kinds: int = 3
    max_per_kind: int = 4
    max_objects: int = 5
    min_size: float = 0.15
    max_size: float = 0.30
    gap: float = 0.03
    margin: float = 0.02
    colour_jitter: int = 10
    same_colour_prob: float = 0.6
    ground_lightness: tuple[float, float] = (40.0, 72.0)
    ground_chroma: float = 10.0
    ground_min_delta_e: float = 22.0
    ground_max_noise: float = 6.0
    max_tries: int = 200

    def __post_init__(self) -> None:
        if not 1 <= self.min_kinds <= self.max_kinds <= len(SHAPES):
            raise ValueError(
                f"min_kinds/max_kinds: need 1 <= {self.min_kinds} <= {self.max_kinds} <= {len(SHAPES)}"
            )
        if not 1 <= self.max_per_kind <= self.max_objects:
            raise ValueError(
                f"max_per_kind: need 1 <= {self.max_per_kind} <= max_objects ({self.max_objects})"
            )
        if self.min_kinds > self.max_objects:
            raise ValueError(
                f"min_kinds ({self.min_kinds}) exceeds max_objects ({self.max_objects})"
            )
        if not 0.0 < self.min_size <= self.max_size < 1.0 - 2 * self.margin:
            raise ValueError(
                f"min_size/max_size: need 0 < {self.min_size} <= {self.max_size} < 1 - 2 margin"
            )
        if self.gap < 0 or self.margin < 0 or self.colour_jitter < 0:
            raise ValueError("gap, margin and colour_jitter must be >= 0")


def jitter_colour(rng: np.random.Generator, colour: str, jitter: int) -> tuple[int, int, int]:
    """The reference RGB of ``colour`` with each channel moved by up to ``jitter``."""
    base = np.array(COLOURS[colour], dtype=np.int64)
    moved = base + rng.integers(-jitter, jitter, size=3, endpoint=True)
    return tuple(int(c) for c in np.clip(moved, 0, 255))


def _ground_colour(rng: np.random.Generator, config: SamplerConfig) -> np.ndarray:
    for _ in range(1000):
        lightness = rng.uniform(*config.ground_lightness)
        chroma = rng.uniform(0.0, config.ground_chroma)
        hue = rng.uniform(0.0, 2 * math.pi)
        lab = np.array([lightness, chroma * math.cos(hue), chroma * math.sin(hue)])
        rgb = np.round(lab_to_srgb(lab))
        if delta_e(REFERENCE_LAB, srgb_to_lab(rgb)).min() >= config.ground_min_delta_e:
            return rgb
    raise PlacementError("no ground colour meets ground_min_delta_e; loosen the ground settings")


def sample_ground(rng: np.random.Generator, config: SamplerConfig | None = None) -> Ground:
    """A muted gradient ground (both ends checked against the ten colours) with noise."""
    config = config or SamplerConfig()
    start, end = _ground_colour(rng, config), _ground_colour(rng, config)
    return Ground(
        start=tuple(int(c) for c in start),
        end=tuple(int(c) for c in end),
        angle=float(rng.uniform(0.0, 360.0)),
        noise=float(rng.uniform(0.0, config.ground_max_noise)),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


def boxes_apart(a: Sequence[float], b: Sequence[float], gap: float) -> bool:
    """True when boxes ``a`` and ``b`` are at least ``gap`` apart along x or along y."""
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _random_position(
    rng: np.random.Generator, shape: str, size: float, config: SamplerConfig
) -> tuple[float, float]:
    w, h = extent(shape)
    lo_x, hi_x = config.margin + w * size / 2, 1 - config.margin - w * size / 2
    lo_y, hi_y = config.margin + h * size / 2, 1 - config.margin - h * size / 2
    return float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))


def place_objects(
    rng: np.random.Generator,
    specs: Sequence[tuple[str, str]],
    config: SamplerConfig | None = None,
    accept: Callable[[list[ShapeObject]], bool] | None = None,
    restarts: int = 50,
) -> list[ShapeObject]:
    """Place objects ``(shape, colour)`` at random sizes and positions under the constraints.

    Args:
        rng: The random stream.
        specs: One ``(shape, colour)`` per object, in order.
        config: The world's constraints.
        accept: Extra condition on the whole placement (e.g. a relation with a margin);
            placements it rejects are drawn again.
        restarts: Whole placements tried before giving up; each restart after the tenth
            shrinks the largest allowed size by 3%.

    Raises:
        PlacementError: No placement satisfied the constraints.
    """
    config = config or SamplerConfig()
    if len(specs) > config.max_objects:
        raise PlacementError(f"{len(specs)} objects exceed max_objects={config.max_objects}")
    # Crowded scenes draw smaller objects so that rejection sampling terminates quickly.
    max_size = min(config.max_size, max(config.min_size, 0.62 / math.sqrt(max(len(specs), 1))))
    for attempt in range(restarts):
        if attempt >= 10:
            max_size = max(config.min_size, max_size * 0.97)
        placed: list[ShapeObject] = []
        for shape, colour in specs:
            for _ in range(config.max_tries):
                size = float(rng.uniform(config.min_size, max_size))
                cx, cy = _random_position(rng, shape, size, config)
                obj = ShapeObject(
                    shape, colour, cx, cy, size, jitter_colour(rng, colour, config.colour_jitter)
                )
                if all(boxes_apart(obj.box(), other.box(), config.gap) for other in placed):
                    placed.append(obj)
                    break
            else:
                break
        if len(placed) == len(specs) and (accept is None or accept(placed)):
            return placed
    raise PlacementError(f"could not place {list(specs)} in {restarts} attempts")


def _sample_counts(rng: np.random.Generator, kinds: int, config: SamplerConfig) -> list[int]:
    counts = []
    for i in range(kinds):
        room = config.max_objects - sum(counts) - (kinds - i - 1)  # leave one for each later kind
        counts.append(int(rng.integers(1, min(config.max_per_kind, room), endpoint=True)))
    return counts


def sample_scene(rng: np.random.Generator, config: SamplerConfig | None = None) -> Scene:
    """A random scene: 1-3 classes (by default), 1-4 objects each, at most 5 in all."""
    config = config or SamplerConfig()
    kinds = int(
        rng.integers(config.min_kinds, min(config.max_kinds, config.max_objects), endpoint=True)
    )
    shapes = [SHAPES[i] for i in rng.choice(len(SHAPES), size=kinds, replace=False)]
    specs: list[tuple[str, str]] = []
    for shape, count in zip(shapes, _sample_counts(rng, kinds, config), strict=True):
        if rng.random() < config.same_colour_prob:
            colours = [COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]] * count
        else:
            colours = [COLOUR_NAMES[int(i)] for i in rng.integers(len(COLOUR_NAMES), size=count)]
        specs.extend((shape, c) for c in colours)
    return Scene(tuple(place_objects(rng, specs, config)), sample_ground(rng, config))
