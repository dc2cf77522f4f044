"""Image grids with their prompts written under them (training samples, benchmark previews)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["captioned_grid"]


def captioned_grid(
    columns: Sequence[Sequence[Image.Image]], prompts: Sequence[str], cell: int = 128
) -> Image.Image:
    """One column per prompt (its images top to bottom, resized to ``cell`` px), the prompt
    wrapped under the column."""
    if len(columns) != len(prompts) or not columns:
        raise ValueError("captioned_grid needs one column of images per prompt")
    rows = max(len(c) for c in columns)
    font = ImageFont.load_default()
    chars = max(8, cell // 6)
    wrapped = [textwrap.wrap(p, chars)[:4] or [""] for p in prompts]
    text_height = 12 * max(len(w) for w in wrapped) + 6
    grid = Image.new("RGB", (cell * len(columns), cell * rows + text_height), "white")
    draw = ImageDraw.Draw(grid)
    for x, (images, lines) in enumerate(zip(columns, wrapped, strict=True)):
        for y, image in enumerate(images):
            tile = image.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            grid.paste(tile, (x * cell, y * cell))
        for k, line in enumerate(lines):
            draw.text((x * cell + 3, rows * cell + 3 + 12 * k), line, fill="black", font=font)
    return grid
