"""A few procedurally drawn sample images that ship with the package (no data files needed).

They give every command something to run on out of the box: a landscape with a sun, a still
life of overlapping shapes, a colour chart and a text card. Drawing is deterministic, so the
images are the same on every machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "SAMPLE_NAMES",
    "draw_sample",
    "shapes_sample_questions",
    "write_samples",
    "write_shapes_samples",
]

SAMPLE_NAMES = ("landscape", "still_life", "colour_chart", "text_card")


def _landscape(size: int) -> Image.Image:
    y = np.linspace(0.0, 1.0, size)[:, None, None]
    sky = (1 - y) * np.array([70, 130, 220]) + y * np.array([250, 200, 160])
    image = Image.fromarray(np.broadcast_to(sky, (size, size, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    s = size
    draw.ellipse((0.62 * s, 0.12 * s, 0.82 * s, 0.32 * s), fill=(255, 225, 90))
    draw.polygon([(0, 0.7 * s), (0.3 * s, 0.38 * s), (0.6 * s, 0.72 * s)], fill=(90, 95, 120))
    draw.polygon([(0.35 * s, 0.75 * s), (0.7 * s, 0.45 * s), (s, 0.75 * s)], fill=(70, 80, 105))
    draw.rectangle((0, 0.72 * s, s, s), fill=(60, 140, 70))
    rng = np.random.default_rng(0)
    for _ in range(40):  # grass texture
        x0, y0 = rng.uniform(0, s), rng.uniform(0.74 * s, s)
        draw.line(
            (x0, y0, x0 + rng.uniform(-3, 3), y0 - rng.uniform(4, 10)), fill=(40, 110, 50), width=1
        )
    return image


def _still_life(size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), (235, 228, 215))
    draw = ImageDraw.Draw(image)
    s = size
    draw.rectangle((0, 0.68 * s, s, s), fill=(150, 105, 70))
    draw.ellipse((0.12 * s, 0.38 * s, 0.42 * s, 0.72 * s), fill=(200, 40, 40))
    draw.rectangle((0.45 * s, 0.25 * s, 0.62 * s, 0.72 * s), fill=(40, 90, 170))
    draw.polygon(
        [(0.64 * s, 0.72 * s), (0.77 * s, 0.3 * s), (0.9 * s, 0.72 * s)], fill=(240, 190, 40)
    )
    draw.ellipse((0.2 * s, 0.44 * s, 0.27 * s, 0.5 * s), fill=(245, 140, 140))  # highlight
    return image.filter(ImageFilter.GaussianBlur(radius=max(size / 256, 0.5)))


def _colour_chart(size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), (30, 30, 30))
    draw = ImageDraw.Draw(image)
    cells = 6
    step = size / cells
    for row in range(cells):
        for col in range(cells):
            hue = (row * cells + col) / (cells * cells)
            rgb = tuple(
                int(255 * (0.5 + 0.5 * np.cos(2 * np.pi * (hue + k / 3)))) for k in range(3)
            )
            pad = step * 0.08
            draw.rectangle(
                (
                    col * step + pad,
                    row * step + pad,
                    (col + 1) * step - pad,
                    (row + 1) * step - pad,
                ),
                fill=rgb,
            )
    return image


def _text_card(size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    lines = ["VQRAE", "one tokenizer", "for seeing", "and drawing", "0123456789"]
    for i, line in enumerate(lines):
        draw.text((size * 0.08, size * (0.1 + 0.16 * i)), line, fill=(20, 20, 60))
    draw.rectangle(
        (size * 0.04, size * 0.04, size * 0.96, size * 0.96), outline=(200, 60, 60), width=3
    )
    return image


_DRAWERS = {
    "landscape": _landscape,
    "still_life": _still_life,
    "colour_chart": _colour_chart,
    "text_card": _text_card,
}


def draw_sample(name: str, size: int = 256) -> Image.Image:
    """Draw the sample ``name`` (one of :data:`SAMPLE_NAMES`) at ``size`` x ``size``."""
    try:
        return _DRAWERS[name](size)
    except KeyError:
        raise ValueError(f"unknown sample {name!r}; samples: {', '.join(SAMPLE_NAMES)}") from None


def write_samples(out_dir: str | os.PathLike, size: int = 256) -> list[Path]:
    """Write every sample as PNG into ``out_dir``; returns the paths."""
    from vqrae.data.images import save_image

    out = Path(out_dir)
    return [save_image(draw_sample(name, size), out / f"{name}.png") for name in SAMPLE_NAMES]


def _shapes_sample(index: int, seed: int) -> tuple[Any, str]:
    """Scene ``index`` of the test split and its file name (after its caption)."""
    import re

    from vqrae.data.shapes import caption, sample_scene, split_rng

    scene = sample_scene(split_rng(seed, "test", "scene", index))
    slug = re.sub(
        r"[^a-z0-9]+", "-", caption(scene, "geneval").lower().removeprefix("a photo of ")
    ).strip("-")[:60]
    return scene, f"shapes_{index}_{slug}.png"


def write_shapes_samples(
    out_dir: str | os.PathLike, n: int = 4, size: int = 224, seed: int = 0
) -> list[Path]:
    """Write ``n`` held-out shapes-world scenes (test split) as PNG, each named after its
    caption (``shapes_0_a-red-star-and-two-blue-circles.png``); returns the paths."""
    from vqrae.data.images import save_image
    from vqrae.data.shapes import render_scene

    out = Path(out_dir)
    paths = []
    for index in range(n):
        scene, name = _shapes_sample(index, seed)
        paths.append(save_image(render_scene(scene, size), out / name))
    return paths


def shapes_sample_questions(n: int = 4, seed: int = 0, per_image: int = 3) -> list[dict[str, Any]]:
    """Held-out questions about the scenes :func:`write_shapes_samples` draws, as LLaVA's
    ``model_vqa`` reads them, with their truths (``answer``, ``category``); ``image`` is the
    sample's file name. Up to ``per_image`` questions per scene, of different kinds."""
    from vqrae.data.shapes.vqa import question_row, scene_questions

    rows = []
    for index in range(n):
        scene, name = _shapes_sample(index, seed)
        qas = scene_questions(np.random.default_rng([seed, index]), scene, phrasings="heldout")
        picked, kinds = [], set()
        for qa in qas:
            if qa.kind not in kinds and len(picked) < per_image:
                picked.append(qa)
                kinds.add(qa.kind)
        rows += [question_row(f"{index}_{j}", name, qa) for j, qa in enumerate(picked)]
    return rows
