"""Synthetic colourful images, and a training mix of them with natural photos.

A tokenizer trained on natural photos alone sees few flat, saturated colours, and its decoder
learns to pull them towards the muted colours photos are made of (the CPU demo tokenizer
returned the shapes world's green as grey and its pink as beige). These images teach it the
saturated colours and sharp edges that the shapes world, colour charts and generated images
are made of. Four kinds, each drawn from a seed, deterministic on every machine:

* ``shapes``: a shapes-world scene (:func:`vqrae.data.shapes.sampler.sample_scene`), rendered
  with its own renderer: flat shapes in GenEval's ten colours over muted grounds;
* ``patches``: overlapping axis-aligned rectangles, flat or with a linear gradient between two
  colours;
* ``chart``: a colour chart, an n x n grid of flat cells with gaps;
* ``polygons``: random star-shaped polygons with 3 to 9 vertices.

Colours (:func:`sample_colour`) are one of GenEval's ten with a wider jitter than the shapes
world's, a saturated hue (HSV saturation >= 0.55, value >= 0.45), or any sRGB colour; grounds
are the shapes world's muted gradients, a flat colour, or a gradient between two colours.
Edges are anti-aliased by drawing at 4x and box-filtering down, as the shapes renderer does.

Shapes scenes take the seeds ``shapes_seed_start ..`` below :data:`TRAIN_SEED_LIMIT`;
held-out evaluation scenes (``benchmarks/shapes_colours.py``) start at 10 000 000, so no
evaluated scene is ever trained on. :func:`write_mix` writes a folder the trainer reads
(``data.train``): the synthetic images as PNG files, and the natural photos as symbolic links
to the originals (never copies)::

    python -m vqrae.data.synthetic --out runs/colour-mix --shapes 1200 --patches 200 \\
        --charts 100 --polygons 200 --natural ../shared/data/imagenet-sample --natural-holdout 100
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vqrae.data.images import list_images
from vqrae.data.shapes.colour import COLOUR_NAMES, COLOURS
from vqrae.data.shapes.render import render_ground, render_scene
from vqrae.data.shapes.sampler import sample_ground, sample_scene
from vqrae.data.training import split_indices
from vqrae.utils.files import atomic_write

__all__ = [
    "SYNTHETIC_KINDS",
    "TRAIN_SEED_LIMIT",
    "MixConfig",
    "draw_chart",
    "draw_patches",
    "draw_polygons",
    "draw_shapes",
    "draw_synthetic",
    "sample_colour",
    "write_mix",
]

#: The kinds of synthetic image, in the order :func:`write_mix` writes them.
SYNTHETIC_KINDS: tuple[str, ...] = ("shapes", "patches", "chart", "polygons")
#: Shapes scenes for training use seeds below this; evaluation scenes start at 10 000 000.
TRAIN_SEED_LIMIT = 1_000_000
_SUPERSAMPLE = 4
RGB = tuple[int, int, int]


def sample_colour(rng: np.random.Generator) -> RGB:
    """A colour: 40% one of GenEval's ten (each channel moved by up to 24), 45% a saturated
    hue (HSV saturation 0.55-1, value 0.45-1), 15% any sRGB colour."""
    u = rng.random()
    if u < 0.4:
        base = np.array(COLOURS[COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]])
        rgb = np.clip(base + rng.integers(-24, 24, size=3, endpoint=True), 0, 255)
    elif u < 0.85:
        hsv = (rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
        rgb = np.round(255 * np.array(colorsys.hsv_to_rgb(*hsv)))
    else:
        rgb = rng.integers(0, 255, size=3, endpoint=True)
    return tuple(int(c) for c in rgb)


def _gradient(size: int, start: RGB, end: RGB, angle: float) -> np.ndarray:
    """A linear gradient ``(size, size, 3)`` float from ``start`` to ``end`` along ``angle``."""
    u = (np.arange(size) + 0.5) / size
    proj = math.cos(angle) * u[None, :] + math.sin(angle) * u[:, None]  # (H, W)
    t = (proj - proj.min()) / max(proj.max() - proj.min(), 1e-9)
    a, b = np.array(start, np.float64), np.array(end, np.float64)
    return a + (b - a) * t[..., None]


def _ground(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ground ``(size, size, 3)`` float: 50% the shapes world's muted gradient with noise,
    20% a flat colour, 30% a gradient between two colours."""
    u = rng.random()
    if u < 0.5:
        return render_ground(sample_ground(rng), size)
    if u < 0.7:
        return np.broadcast_to(np.array(sample_colour(rng), np.float64), (size, size, 3)).copy()
    return _gradient(size, sample_colour(rng), sample_colour(rng), rng.uniform(0, 2 * math.pi))


def _composite(
    ground: np.ndarray, layers: list[tuple[list[tuple[float, float]], np.ndarray]]
) -> Image.Image:
    """Paint polygons (unit coordinates) over ``ground``, in order, anti-aliased.

    Each layer is ``(outline, fill)``, the fill an RGB triple or an image ``(S, S, 3)``.
    """
    size = ground.shape[0]
    image = ground.astype(np.float64)
    big = size * _SUPERSAMPLE
    for outline, fill in layers:
        canvas = Image.new("L", (big, big), 0)
        ImageDraw.Draw(canvas).polygon([(x * big, y * big) for x, y in outline], fill=255)
        alpha = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), np.float64) / 255.0
        a = alpha[..., None]
        image = image * (1 - a) + np.asarray(fill, np.float64) * a
    return Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8), "RGB")


def _rectangle(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def draw_shapes(rng: np.random.Generator, size: int) -> Image.Image:
    """A shapes-world scene drawn from ``rng``, rendered at ``size``."""
    return render_scene(sample_scene(rng), size)


def draw_patches(rng: np.random.Generator, size: int) -> Image.Image:
    """3-12 overlapping rectangles (10-60% of the side), 60% flat, 40% a gradient."""
    layers = []
    for _ in range(int(rng.integers(3, 12, endpoint=True))):
        w, h = rng.uniform(0.1, 0.6, size=2)
        x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        if rng.random() < 0.6:
            fill: np.ndarray = np.array(sample_colour(rng), np.float64)
        else:
            fill = _gradient(
                size, sample_colour(rng), sample_colour(rng), rng.uniform(0, 2 * math.pi)
            )
        layers.append((_rectangle(x0, y0, x0 + w, y0 + h), fill))
    return _composite(_ground(rng, size), layers)


def draw_chart(rng: np.random.Generator, size: int) -> Image.Image:
    """An n x n colour chart (n from 3 to 8) of flat cells, gaps of 4-15% of a cell."""
    cells = int(rng.integers(3, 8, endpoint=True))
    gap = rng.uniform(0.04, 0.15) / cells
    step = 1.0 / cells
    layers = []
    for row in range(cells):
        for col in range(cells):
            x0, y0 = col * step + gap / 2, row * step + gap / 2
            outline = _rectangle(x0, y0, x0 + step - gap, y0 + step - gap)
            layers.append((outline, np.array(sample_colour(rng), np.float64)))
    return _composite(_ground(rng, size), layers)


def draw_polygons(rng: np.random.Generator, size: int) -> Image.Image:
    """2-8 random star-shaped polygons (3-9 vertices, radius 8-30% of the side), flat colours."""
    layers = []
    for _ in range(int(rng.integers(2, 8, endpoint=True))):
        vertices = int(rng.integers(3, 9, endpoint=True))
        radius = rng.uniform(0.08, 0.3)
        cx, cy = rng.uniform(radius, 1 - radius, size=2)
        angles = np.sort(rng.uniform(0, 2 * math.pi, size=vertices))
        radii = radius * rng.uniform(0.45, 1.0, size=vertices)
        outline = [
            (cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii, strict=True)
        ]
        layers.append((outline, np.array(sample_colour(rng), np.float64)))
    return _composite(_ground(rng, size), layers)


_DRAWERS: dict[str, Callable[[np.random.Generator, int], Image.Image]] = {
    "shapes": draw_shapes,
    "patches": draw_patches,
    "chart": draw_chart,
    "polygons": draw_polygons,
}


def draw_synthetic(kind: str, seed: int, size: int = 224) -> Image.Image:
    """The synthetic image ``seed`` of ``kind`` (one of :data:`SYNTHETIC_KINDS`) at ``size``.

    ``shapes`` draws from ``numpy.random.default_rng(seed)``, the seeding of the evaluation
    scenes (which start at 10 000 000); the other kinds draw from their own stream per kind.
    """
    if kind not in _DRAWERS:
        raise ValueError(
            f"unknown synthetic kind {kind!r}; expected one of {list(SYNTHETIC_KINDS)}"
        )
    if size < 8:
        raise ValueError(f"size: must be at least 8 pixels, got {size}")
    if kind == "shapes":
        rng = np.random.default_rng(seed)
    else:
        rng = np.random.default_rng([SYNTHETIC_KINDS.index(kind), seed])
    return _DRAWERS[kind](rng, size)


@dataclass(frozen=True)
class MixConfig:
    """What :func:`write_mix` puts in a training folder.

    Attributes:
        shapes, patches, charts, polygons: images of each synthetic kind.
        size: side of the synthetic images in pixels.
        seed: first seed of the non-shapes kinds.
        shapes_seed_start: first shapes-scene seed (all must stay below
            :data:`TRAIN_SEED_LIMIT`).
        natural: a folder of natural photos linked into the mix (``None``: none).
        natural_count: link only the first N of them (sorted; ``None``: all).
        natural_holdout: leave out the photos that a trainer reading ``natural`` alone with
            ``data.val_count: N`` (split seed 0) holds out, so that a model trained on the mix
            can still be evaluated on them (the CPU demo recipe holds out 100).
    """

    shapes: int = 1200
    patches: int = 200
    charts: int = 100
    polygons: int = 200
    size: int = 224
    seed: int = 0
    shapes_seed_start: int = 0
    natural: str | None = None
    natural_count: int | None = None
    natural_holdout: int = 0

    def __post_init__(self) -> None:
        for name in ("shapes", "patches", "charts", "polygons"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.size < 8:
            raise ValueError(f"size: must be at least 8 pixels, got {self.size}")
        if self.shapes_seed_start < 0 or self.shapes_seed_start + self.shapes > TRAIN_SEED_LIMIT:
            raise ValueError(
                f"shapes_seed_start: seeds {self.shapes_seed_start}..{self.shapes_seed_start + self.shapes} "
                f"must stay in [0, {TRAIN_SEED_LIMIT}) (evaluation scenes use the seeds above)"
            )
        if self.natural_count is not None and self.natural_count < 0:
            raise ValueError(f"natural_count: must be >= 0, got {self.natural_count}")
        if self.natural_holdout < 0:
            raise ValueError(f"natural_holdout: must be >= 0, got {self.natural_holdout}")


def write_mix(out_dir: str | os.PathLike[str], config: MixConfig) -> dict[str, int]:
    """Write the mix into ``out_dir``: ``<kind>/<kind>_<seed>.png`` for the synthetic images,
    ``natural/<name>`` symbolic links to the natural photos, and ``mix.json`` (the config and
    the counts). Existing synthetic files are kept (they are deterministic), so an interrupted
    call can simply be repeated.

    Returns:
        Images per kind (``natural`` included).

    Raises:
        ValueError: ``config.natural`` is not a folder.
    """
    out = Path(out_dir)
    counts: dict[str, int] = {}
    plan = {
        "shapes": range(config.shapes_seed_start, config.shapes_seed_start + config.shapes),
        "patches": range(config.seed, config.seed + config.patches),
        "chart": range(config.seed, config.seed + config.charts),
        "polygons": range(config.seed, config.seed + config.polygons),
    }
    for kind, seeds in plan.items():
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            path = folder / f"{kind}_{seed:07d}.png"
            if not path.is_file():
                image = draw_synthetic(kind, seed, config.size)
                atomic_write(path, lambda tmp, im=image: im.save(tmp, format="PNG"))
        counts[kind] = len(seeds)
    counts["natural"] = 0
    if config.natural is not None:
        source = Path(config.natural)
        if not source.is_dir():
            raise ValueError(f"natural: {source} is not a folder")
        folder = out / "natural"
        folder.mkdir(parents=True, exist_ok=True)
        photos = list_images([source])
        if config.natural_holdout:
            kept, _ = split_indices(len(photos), config.natural_holdout, 0)
            photos = [photos[i] for i in sorted(kept)]
        photos = photos[: config.natural_count]
        for photo in photos:
            link = folder / photo.relative_to(source).as_posix().replace("/", "_")
            if not link.is_symlink():
                link.symlink_to(photo.resolve())
        counts["natural"] = len(photos)
    text = json.dumps({"config": asdict(config), "counts": counts}, indent=2) + "\n"
    atomic_write(out / "mix.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return counts


def main(argv: list[str] | None = None) -> int:
    """``python -m vqrae.data.synthetic --out DIR ...``: write a training mix (:func:`write_mix`)."""
    parser = argparse.ArgumentParser(
        description="Write a training mix of synthetic colourful images."
    )
    parser.add_argument("--out", required=True, help="folder to write")
    defaults = MixConfig()
    for name in ("shapes", "patches", "charts", "polygons", "size", "seed", "shapes_seed_start"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name)
        )
    parser.add_argument("--natural", default=None, help="folder of natural photos to link")
    parser.add_argument("--natural-count", type=int, default=None)
    parser.add_argument("--natural-holdout", type=int, default=0)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    counts = write_mix(out, MixConfig(**args))
    print(f"wrote {out}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
