"""A scene is data: its objects (class, colour, centre, size, fill) and its ground.

Coordinates are fractions of the image side (images are square), ``x`` to the right and ``y``
down, so one scene renders at any size. ``(cx, cy)`` is the centre of the object's tight box
and ``size`` its longer side (see :mod:`vqrae.data.shapes.geometry`), so boxes, and the
GenEval relations computed from them, are exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from vqrae.data.shapes.colour import COLOURS
from vqrae.data.shapes.geometry import extent
from vqrae.data.shapes.vocab import SHAPES

__all__ = ["Box", "Ground", "Scene", "ShapeObject"]

#: ``(x0, y0, x1, y1)``, GenEval's box convention (top-left and bottom-right corners).
Box = tuple[float, float, float, float]
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ShapeObject:
    """One object.

    Attributes:
        shape: One of :data:`~vqrae.data.shapes.vocab.SHAPES`.
        colour: One of GenEval's ten colour names.
        cx: Centre of the tight box, fraction of the width.
        cy: Centre of the tight box, fraction of the height.
        size: Longer side of the tight box, fraction of the width.
        rgb: The fill actually drawn (the colour's reference RGB with jitter).
    """

    shape: str
    colour: str
    cx: float
    cy: float
    size: float
    rgb: RGB

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape: unknown {self.shape!r}; expected one of {list(SHAPES)}")
        if self.colour not in COLOURS:
            raise ValueError(f"colour: unknown {self.colour!r}; expected one of {list(COLOURS)}")
        if not 0.0 < self.size <= 1.0:
            raise ValueError(f"size: must be in (0, 1], got {self.size}")
        object.__setattr__(self, "rgb", tuple(int(c) for c in self.rgb))

    def box(self, image_size: float = 1.0) -> Box:
        """The tight box ``(x0, y0, x1, y1)``, scaled by ``image_size`` (1: fractions)."""
        w, h = extent(self.shape)
        hw, hh = w * self.size / 2, h * self.size / 2
        s = float(image_size)
        return ((self.cx - hw) * s, (self.cy - hh) * s, (self.cx + hw) * s, (self.cy + hh) * s)

    def moved(self, cx: float, cy: float) -> ShapeObject:
        """The same object centred elsewhere."""
        return ShapeObject(self.shape, self.colour, cx, cy, self.size, self.rgb)


@dataclass(frozen=True)
class Ground:
    """A muted ground: a linear gradient between two colours plus Gaussian pixel noise.

    Attributes:
        start: sRGB where the gradient starts.
        end: sRGB where it ends.
        angle: Direction of the gradient in degrees (0: left to right, 90: top to bottom).
        noise: Standard deviation of the per-pixel noise, in 0-255 units.
        noise_seed: Seed of the noise field (the same scene renders identically).
    """

    start: RGB
    end: RGB
    angle: float
    noise: float
    noise_seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", tuple(int(c) for c in self.start))
        object.__setattr__(self, "end", tuple(int(c) for c in self.end))


@dataclass(frozen=True)
class Scene:
    """Objects on a ground; the unit of truth from which images, captions and questions follow."""

    objects: tuple[ShapeObject, ...]
    ground: Ground
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))

    def counts(self) -> Counter[str]:
        """Objects per class."""
        return Counter(o.shape for o in self.objects)

    def of_shape(self, shape: str) -> list[ShapeObject]:
        """The objects of one class, in scene order."""
        return [o for o in self.objects if o.shape == shape]

    def colours_of(self, shape: str) -> set[str]:
        """The colours the objects of one class have."""
        return {o.colour for o in self.objects if o.shape == shape}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return {
            "objects": [asdict(o) | {"rgb": list(o.rgb)} for o in self.objects],
            "ground": asdict(self.ground)
            | {"start": list(self.ground.start), "end": list(self.ground.end)},
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Rebuild a scene written by :meth:`to_dict`."""
        objects = tuple(ShapeObject(**o) for o in data["objects"])
        return cls(objects, Ground(**data["ground"]), dict(data.get("meta", {})))
