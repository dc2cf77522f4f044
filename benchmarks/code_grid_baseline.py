"""What a tokenizer's codes carry beyond a thumbnail of the same grid.

Baseline: a g x g bicubic thumbnail of each image (antialiased down, bicubic up), where g x g is
the tokenizer's code grid; and a 1.5 g thumbnail for scale. A tokenizer whose reconstructions
match the g x g thumbnail spends its codes on each cell's colour and little else. The script
also reports where the bits go inside the quantizer, on the same held-out images:

- the participation ratio ``(sum l)^2 / sum l^2`` of the eigenvalues ``l`` of the token
  covariance, for the encoder features Z_I and for the projected quantizer input z (how many
  directions carry the variance that the nearest-code search sees);
- the share of z's variance that its nearest code keeps;
- the PSNR of decoding the continuous z instead of its codes (how much the codes lose).

    .venv/bin/python benchmarks/code_grid_baseline.py                   # shipped demo model
    .venv/bin/python benchmarks/code_grid_baseline.py --model runs/x/model --images 48
    .venv/bin/python benchmarks/code_grid_baseline.py --data runs/natural-photos --val-count 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

import vqrae
from vqrae.data.images import center_crop_resize, load_image, pil_to_tensor
from vqrae.data.training import split_indices
from vqrae.eval.metrics import psnr, ssim

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet-sample"


def thumbnail(images: torch.Tensor, side: int) -> torch.Tensor:
    """Bicubic round trip through a side x side thumbnail: (n, 3, H, W) -> same, in [0, 1]."""
    small = F.interpolate(images, size=(side, side), mode="bicubic", antialias=True)
    return F.interpolate(small, size=images.shape[-2:], mode="bicubic").clamp(0, 1)


def participation_ratio(tokens: torch.Tensor) -> float:
    """Effective number of directions of (T, d) tokens: (sum l)^2 / sum l^2 of the covariance."""
    x = tokens.double() - tokens.double().mean(0)
    eigenvalues = torch.linalg.eigvalsh(x.T @ x / len(x))
    return float(eigenvalues.sum() ** 2 / eigenvalues.pow(2).sum())


def quality(reference: torch.Tensor, recon: torch.Tensor) -> tuple[float, float]:
    return float(psnr(reference, recon).mean()), float(ssim(reference, recon).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vqrae-dinov2-s-demo")
    parser.add_argument("--data", default=str(DATA), help="image folder (the trainer's split)")
    parser.add_argument(
        "--val-count", type=int, default=100, help="the trainer's val_count (0: every image)"
    )
    parser.add_argument("--images", type=int, default=100, help="held-out images to score")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"{data} not found: give --data an image folder")
    torch.set_num_threads(args.threads)

    model = vqrae.VQRAE.from_pretrained(args.model).eval()
    size = model.config.image_size
    paths = sorted(p for p in data.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    if args.val_count:
        _, held_out = split_indices(len(paths), args.val_count, 0)  # the trainer's split
    else:
        held_out = list(range(len(paths)))  # a test folder: every image
    held_out = held_out[: args.images]
    images = torch.stack(
        [pil_to_tensor(center_crop_resize(load_image(paths[i]), size)) for i in held_out]
    )
    grid = model.grid_for(images)
    features, z, codes = [], [], []
    with torch.no_grad():
        for start in range(0, len(images), 8):
            f = model.encode(images[start : start + 8])  # (b, N, d)
            projected = model.quant_proj(f)  # (b, N, e)
            features.append(f)
            z.append(projected)
            codes.append(model.quantizer(projected).codes)
        features_all, z_all, codes_all = torch.cat(features), torch.cat(z), torch.cat(codes)
        recon = torch.cat([model.decode(c, grid) for c in codes_all.split(8)])
        recon_continuous = torch.cat([model.decode(c, grid) for c in z_all.split(8)])

    flat_z = z_all.reshape(-1, z_all.shape[-1])
    kept = (
        1
        - (codes_all.reshape_as(flat_z) - flat_z).pow(2).sum()
        / (flat_z - flat_z.mean(0)).pow(2).sum()
    )
    print(
        f"{args.model}: {len(images)} held-out images at {size} px, {grid[0]}x{grid[1]} codes, "
        f"{model.config.codebook_size} x {model.config.codebook_dim} codebook"
    )
    print(
        f"participation ratio: encoder features {participation_ratio(features_all.flatten(0, 1)):.1f}"
        f" of {features_all.shape[-1]}, quantizer input z {participation_ratio(flat_z):.1f}; "
        f"the nearest code keeps {100 * float(kept):.1f}% of z's variance"
    )
    rows = {
        f"thumbnail {grid[0]}x{grid[1]} (baseline)": quality(images, thumbnail(images, grid[0])),
        f"thumbnail {3 * grid[0] // 2}x{3 * grid[1] // 2}": quality(
            images, thumbnail(images, 3 * grid[0] // 2)
        ),
        "tokenizer (codes)": quality(images, recon),
        "tokenizer (continuous z, no quantization)": quality(images, recon_continuous),
    }
    base_psnr = next(iter(rows.values()))[0]
    print(f"{'':44s} {'PSNR':>8s} {'SSIM':>7s} {'MSE ratio to baseline':>22s}")
    for name, (p, s) in rows.items():
        print(f"{name:44s} {p:8.2f} {s:7.3f} {10 ** ((base_psnr - p) / 10):21.2f}x")


if __name__ == "__main__":
    main()
