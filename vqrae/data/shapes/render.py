"""Render a scene at any size: the ground in float, each object anti-aliased by supersampling.

Each object is drawn as a filled polygon on a ``supersample``-times finer grid over its own box
(plus one pixel), box-filtered down to a coverage map, and composited over the ground with its
fill colour. The ground is the gradient plus Gaussian noise from the scene's noise seed, so a
scene renders identically every time.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from vqrae.data.shapes.geometry import unit_outline
from vqrae.data.shapes.scene import Ground, Scene, ShapeObject

__all__ = ["object_coverage", "render_ground", "render_scene"]


def render_ground(ground: Ground, size: int) -> np.ndarray:
    """The ground as float RGB ``(size, size, 3)`` in 0-255 (noise included, not clipped)."""
    u = (np.arange(size) + 0.5) / size
    theta = math.radians(ground.angle)
    proj = np.cos(theta) * u[None, :] + np.sin(theta) * u[:, None]  # (H, W)
    corners = [np.cos(theta) * x + np.sin(theta) * y for x in (0.0, 1.0) for y in (0.0, 1.0)]
    t = (proj - min(corners)) / (max(corners) - min(corners))
    start, end = np.array(ground.start, np.float64), np.array(ground.end, np.float64)
    image = start + (end - start) * t[..., None]  # (H, W, 3)
    if ground.noise > 0:
        noise_rng = np.random.default_rng(ground.noise_seed)
        image = image + noise_rng.normal(0.0, ground.noise, size=image.shape)
    return image


def object_coverage(
    obj: ShapeObject, size: int, supersample: int = 4
) -> tuple[tuple[int, int], np.ndarray]:
    """Fractional coverage of the pixels around one object.

    Returns:
        ``((x, y), alpha)``: the top-left pixel of the patch and the coverage ``(h, w)`` in
        [0, 1] of each pixel of the patch by the object.
    """
    x0, y0, x1, y1 = obj.box(size)
    px0, py0 = max(int(math.floor(x0)) - 1, 0), max(int(math.floor(y0)) - 1, 0)
    px1, py1 = min(int(math.ceil(x1)) + 1, size), min(int(math.ceil(y1)) + 1, size)
    w, h = px1 - px0, py1 - py0
    canvas = Image.new("L", (w * supersample, h * supersample), 0)
    outline = unit_outline(obj.shape)
    xs = (x0 + outline[:, 0] * (x1 - x0) - px0) * supersample
    ys = (y0 + outline[:, 1] * (y1 - y0) - py0) * supersample
    ImageDraw.Draw(canvas).polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255)
    alpha = np.asarray(canvas.resize((w, h), Image.Resampling.BOX), dtype=np.float64) / 255.0
    return (px0, py0), alpha


def render_scene(scene: Scene, size: int = 256, supersample: int = 4) -> Image.Image:
    """Render ``scene`` as a ``size x size`` RGB image."""
    if size < 8:
        raise ValueError(f"size: must be at least 8 pixels, got {size}")
    if supersample < 1:
        raise ValueError(f"supersample: must be >= 1, got {supersample}")
    image = render_ground(scene.ground, size)
    for obj in scene.objects:
        (px, py), alpha = object_coverage(obj, size, supersample)
        h, w = alpha.shape
        patch = image[py : py + h, px : px + w]
        a = alpha[..., None]
        image[py : py + h, px : px + w] = patch * (1 - a) + np.array(obj.rgb, np.float64) * a
    return Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8), "RGB")
