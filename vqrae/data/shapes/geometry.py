"""The outline of each upright shape, in the unit square of its own tight bounding box.

A shape of size ``d`` (the longer side of its tight box, as a fraction of the image width)
occupies a box of ``extent(shape) * d``; its outline is :func:`unit_outline` scaled into that
box. So the box, and with it every GenEval relation, is known exactly from the scene.

* circle: a disc, box ``d x d``;
* square: box ``d x d``;
* triangle: equilateral, apex up, base at the bottom, box ``d x (sqrt(3)/2) d``;
* star: five points, one straight up, inner radius ``0.382`` of the outer (the regular
  pentagram's), box ``d x 0.951 d``;
* hexagon: regular, flat top and bottom, box ``d x (sqrt(3)/2) d``;
* cross: a plus sign, arms ``1/3`` of ``d`` thick, box ``d x d``.

The detector fits the same outlines (and a few variants: pointed-top hexagons, fatter stars,
thinner and thicker crosses) to the boxes it finds.
"""

from __future__ import annotations

import math

import numpy as np

from vqrae.data.shapes.vocab import SHAPES

__all__ = ["CIRCLE_VERTICES", "aspect", "extent", "unit_outline"]

#: Vertices of the polygon that stands for a circle (fine enough at 8x supersampling of 1024 px).
CIRCLE_VERTICES = 180
_STAR_INNER = math.sin(math.radians(18)) / math.sin(math.radians(54))  # 0.382
_CROSS_ARM = 1.0 / 3.0


def _check(shape: str) -> None:
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")


def _normalise(points: np.ndarray) -> np.ndarray:
    """Scale points ``(K, 2)`` so that their tight box is the unit square."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - lo) / (hi - lo)


def _star(inner: float) -> np.ndarray:
    angles = -math.pi / 2 + np.arange(10) * math.pi / 5  # outer point first, straight up
    radii = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _hexagon(pointed_top: bool) -> np.ndarray:
    start = -math.pi / 2 if pointed_top else 0.0
    angles = start + np.arange(6) * math.pi / 3
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _cross(arm: float) -> np.ndarray:
    a, b = 0.5 - arm / 2, 0.5 + arm / 2
    return np.array(
        [
            [a, 0],
            [b, 0],
            [b, a],
            [1, a],
            [1, b],
            [b, b],
            [b, 1],
            [a, 1],
            [a, b],
            [0, b],
            [0, a],
            [a, a],
        ],
        dtype=np.float64,
    )


def _raw_outline(
    shape: str, star_inner: float, cross_arm: float, hexagon_pointed_top: bool
) -> np.ndarray:
    _check(shape)
    if shape == "circle":
        t = np.arange(CIRCLE_VERTICES) * 2 * math.pi / CIRCLE_VERTICES
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "square":
        return np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    if shape == "triangle":
        h = math.sqrt(3) / 2  # equilateral, side 1, apex up
        return np.array([[0.5, 0.0], [1.0, h], [0.0, h]])
    if shape == "star":
        return _star(star_inner)
    if shape == "hexagon":
        return _hexagon(hexagon_pointed_top)
    return _cross(cross_arm)


def unit_outline(
    shape: str,
    star_inner: float = _STAR_INNER,
    cross_arm: float = _CROSS_ARM,
    hexagon_pointed_top: bool = False,
) -> np.ndarray:
    """The shape's outline ``(K, 2)`` as ``(x, y)`` in its unit box (y points down).

    The keyword arguments give the variants the detector also tries; the defaults are the
    world's shapes.
    """
    return _normalise(_raw_outline(shape, star_inner, cross_arm, hexagon_pointed_top))


def aspect(
    shape: str,
    star_inner: float = _STAR_INNER,
    cross_arm: float = _CROSS_ARM,
    hexagon_pointed_top: bool = False,
) -> float:
    """Width over height of the shape's tight box (1 for circles, squares and crosses)."""
    pts = _raw_outline(shape, star_inner, cross_arm, hexagon_pointed_top)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    return float(w / h)


def extent(shape: str) -> tuple[float, float]:
    """Width and height of the shape's tight box per unit size (the longer side is 1)."""
    r = aspect(shape)
    return (1.0, 1.0 / r) if r >= 1 else (r, 1.0)
