"""Write scikit-image's bundled natural photographs into a folder: a held-out test set that is
not from the ImageNet sample the demo tokenizer was trained on.

Colour photos (astronaut, chelsea, coffee, rocket, hubble_deep_field, immunohistochemistry,
retina, the left view of stereo_motorcycle) and grey ones (camera, brick, grass, gravel), saved
as PNG; scikit-image ships them, so nothing is downloaded.

    .venv/bin/python benchmarks/natural_photos.py --out runs/natural-photos
    vqrae eval-recon --data runs/natural-photos --out runs/eval-natural

Twelve 224 px images are only 12 x 48 x 48 = 27 648 codes, 13.5 per code of a 2048 codebook: too
few to measure codebook usage. ``--tiles 224`` also writes every non-overlapping 224 px tile of
each photo at its own resolution (scenes at a closer scale: 84 tiles), for that measurement.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "stereo_motorcycle", "camera", "brick", "grass", "gravel",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiles", type=int, default=0, help="also write SIZE px tiles (0: no)")
    args = parser.parse_args()
    import skimage.data

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tiles = 0
    for name in NAMES:
        image = getattr(skimage.data, name)()
        if isinstance(image, tuple):  # stereo pairs: the left view
            image = image[0]
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        image = image[..., :3].astype(np.uint8)
        Image.fromarray(image).save(out / f"{name}.png")
        tiles += _write_tiles(image, args.tiles, out / f"{name}_tile") if args.tiles else 0
    print(f"wrote {len(NAMES)} photos and {tiles} tiles to {out}")


def _write_tiles(image: np.ndarray, size: int, prefix: Path) -> int:
    """Save every non-overlapping size x size tile of ``image`` (H, W, 3); returns the count."""
    rows, cols = image.shape[0] // size, image.shape[1] // size
    for row in range(rows):
        for col in range(cols):
            tile = image[row * size : (row + 1) * size, col * size : (col + 1) * size]
            Image.fromarray(tile).save(f"{prefix}_{row}_{col}.png")
    return rows * cols


if __name__ == "__main__":
    main()
