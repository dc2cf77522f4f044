"""Spatial relations computed as GenEval computes them (``evaluate_images.py``).

For boxes ``a`` and ``b`` (``x0, y0, x1, y1``): ``offset = centre(a) - centre(b)``; each axis
of the offset is shrunk towards zero by ``0.1 * (size_a + size_b)`` along that axis (clipped at
zero, sign kept); if both shrunk components are below ``1e-3`` there is no relation. Otherwise
``(dx, dy) = shrunk / |offset|`` (the *unshrunk* offset's length) and ``a`` is ``left of`` ``b``
if ``dx < -0.5``, ``right of`` if ``dx > 0.5``, ``above`` if ``dy < -0.5`` and ``below`` if
``dy > 0.5`` (y points down). Several relations can hold at once, or none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["OPPOSITE", "POSITION_THRESHOLD", "RELATIONS", "relation_scores", "relative_position"]

#: GenEval's ``position_threshold`` default.
POSITION_THRESHOLD = 0.1
#: GenEval's four relations, in ``create_prompts.py`` order.
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
OPPOSITE: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}


def relation_scores(
    box_a: Sequence[float], box_b: Sequence[float], threshold: float = POSITION_THRESHOLD
) -> dict[str, float] | None:
    """GenEval's signed unit components for ``a`` relative to ``b``.

    Returns:
        ``{"left of": -dx, "right of": dx, "above": -dy, "below": dy}`` (a relation holds when
        its value exceeds 0.5), or ``None`` when GenEval finds no relation at all.
    """
    ax0, ay0, ax1, ay1 = (float(v) for v in box_a[:4])
    bx0, by0, bx1, by1 = (float(v) for v in box_b[:4])
    off_x = (ax0 + ax1) / 2 - (bx0 + bx1) / 2
    off_y = (ay0 + ay1) / 2 - (by0 + by1) / 2
    dim_x = abs(ax1 - ax0) + abs(bx1 - bx0)
    dim_y = abs(ay1 - ay0) + abs(by1 - by0)
    rx = max(abs(off_x) - threshold * dim_x, 0.0) * math.copysign(1.0, off_x) if off_x else 0.0
    ry = max(abs(off_y) - threshold * dim_y, 0.0) * math.copysign(1.0, off_y) if off_y else 0.0
    if abs(rx) < 1e-3 and abs(ry) < 1e-3:
        return None
    norm = math.hypot(off_x, off_y)
    dx, dy = rx / norm, ry / norm
    return {"left of": -dx, "right of": dx, "above": -dy, "below": dy}


def relative_position(
    box_a: Sequence[float], box_b: Sequence[float], threshold: float = POSITION_THRESHOLD
) -> set[str]:
    """The set of GenEval relations that hold for ``a`` relative to ``b``."""
    scores = relation_scores(box_a, box_b, threshold)
    if scores is None:
        return set()
    return {rel for rel in RELATIONS if scores[rel] > 0.5}
