"""Writers of awkward image files shared by the data and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_odd_images(folder: Path) -> dict[str, Path]:
    """Write readable images in unusual modes and sizes; returns {label: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = (rng.random((61, 97, 3)) * 255).astype(np.uint8)
    files = {
        "rgb_jpeg": (Image.fromarray(rgb), "rgb.jpg"),
        "rgba_png": (
            Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])),
            "rgba.png",
        ),
        "grey": (Image.fromarray(rgb[..., 0]), "grey.png"),
        "grey16": (Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "grey16.png"),
        "palette": (
            Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
            "palette.gif",
        ),
        "cmyk": (Image.fromarray(rgb).convert("CMYK"), "cmyk.jpg"),
        "tiny": (Image.fromarray(rgb[:5, :3]), "tiny.bmp"),
        "tall": (Image.fromarray(np.repeat(rgb, 5, axis=0)), "tall.webp"),
    }
    paths = {}
    for label, (image, name) in files.items():
        image.save(folder / name)
        paths[label] = folder / name
    return paths


def write_bad_files(folder: Path) -> dict[str, Path]:
    """Write files that are not readable images; returns {label: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "_good.jpg"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(good)
    data = good.read_bytes()
    good.unlink()
    paths = {
        "truncated": folder / "truncated.jpg",
        "text": folder / "notes.png",
        "empty": folder / "empty.jpeg",
    }
    paths["truncated"].write_bytes(data[: len(data) // 3])
    paths["text"].write_text("this is not an image\n")
    paths["empty"].write_bytes(b"")
    return paths
