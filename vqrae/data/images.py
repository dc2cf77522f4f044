"""Reading any image Pillow understands into RGB, and the evaluation crop.

Conversions (documented behaviour of every command that reads images):

* EXIF orientation is applied;
* 16-bit and 32-bit integer greyscale (``I;16*``, ``I``) are scaled to 8 bits by their bit depth;
  float images (``F``) are clipped to [0, 1] if they lie in it, else min-max scaled;
* images with transparency (RGBA, LA, PA, palette with a transparent colour) are composited
  over white;
* everything else (L, 1, P, CMYK, YCbCr, LAB, HSV) is converted to RGB by Pillow;
* the evaluation transform resizes the shorter side to the target size and centre-crops a square
  (ADM / LlamaGen ``center_crop_arr``: box downsampling by 2 while the image is at least twice
  the target, then bicubic), so odd sizes and aspect ratios are fine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vqrae.utils.files import atomic_write

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "center_crop_resize",
    "list_images",
    "load_image",
    "pil_to_tensor",
    "save_image",
    "tensor_to_pil",
    "to_rgb",
    "to_uint8",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
)


class ImageReadError(ValueError):
    """An input file could not be read as an image; the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def list_images(inputs: Iterable[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """Expand files and folders into a sorted-per-folder list of image paths.

    Files named explicitly are kept whatever their extension, and so are paths that do not
    exist: reading them reports the problem, file by file. Folders contribute the files with an
    image extension.
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = [
                p
                for p in path.glob(pattern)
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            ]
            paths.extend(sorted(found))
        else:
            paths.append(path)
    return paths


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (see the module docstring)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        depth = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        if mode == "I" and array.max(initial=0) > 65535:
            depth = float(2**32 - 1)
        grey = np.clip(array / depth * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            array = (array - lo) / max(hi - lo, 1e-12)
        return Image.fromarray((array * 255.0 + 0.5).astype(np.uint8)).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if mode != "RGB" else image


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as 8-bit RGB; raises :class:`ImageReadError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a directory")
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image) or image
            rgb = to_rgb(image)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image Pillow can identify") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(path, f"corrupt or unreadable image ({exc})") from None
    if min(rgb.size) < 1:
        raise ImageReadError(path, "empty image")
    return rgb


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and centre-crop ``size`` x ``size`` (ADM protocol)."""
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(
        tuple(max(size, round(x * scale)) for x in image.size), resample=Image.BICUBIC
    )
    left = (image.size[0] - size) // 2
    top = (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB image -> float tensor (3, H, W) in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> the 8-bit levels a saved PNG holds (clamped, round half up).

    The one 8-bit rounding of the project: saved images and the metrics computed on "the saved
    images" both go through it.
    """
    return images.detach().float().clamp(0.0, 1.0).mul(255.0).add(0.5).floor().to(torch.uint8)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [0, 1] -> 8-bit RGB image (:func:`to_uint8`)."""
    return Image.fromarray(to_uint8(image).permute(1, 2, 0).cpu().numpy())


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike) -> Path:
    """Write a PNG atomically (temporary file, then rename); returns the path."""
    pil = tensor_to_pil(image) if isinstance(image, torch.Tensor) else image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: pil.save(tmp, format="PNG"))
