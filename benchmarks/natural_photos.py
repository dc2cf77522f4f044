"""Write scikit-image's bundled natural photographs into a folder: a held-out test set that is
not from the ImageNet sample the demo tokenizer was trained on.

Colour photos (astronaut, chelsea, coffee, rocket, hubble_deep_field, immunohistochemistry,
retina, the left view of stereo_motorcycle) and grey ones (camera, brick, grass, gravel), saved
as PNG; scikit-image ships them, so nothing is downloaded.

    .venv/bin/python benchmarks/natural_photos.py --out runs/natural-photos
    vqrae eval-recon --data runs/natural-photos --out runs/eval-natural
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
    args = parser.parse_args()
    import skimage.data

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        image = getattr(skimage.data, name)()
        if isinstance(image, tuple):  # stereo pairs: the left view
            image = image[0]
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        Image.fromarray(image[..., :3].astype(np.uint8)).save(out / f"{name}.png")
    print(f"wrote {len(NAMES)} photos to {out}")


if __name__ == "__main__":
    main()
