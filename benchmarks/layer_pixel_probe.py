"""How much of the image each encoder layer keeps, and what it costs in semantics.

For every block of the demo encoder (DINOv2-S reading 224 px images at 448 px, 32 x 32 tokens,
each token covering 7 x 7 pixels) this fits a ridge regression from one token (layer-normalised
without affine, as the tokenizer reads it) to its 7 x 7 RGB patch on training images and reports
the PSNR / SSIM of that linear decoder on held-out images: a lower bound on what a decoder can
recover from the layer. The semantic side is the leave-one-out 1-NN accuracy of mean-pooled
tokens over the ImageNet-sample images of the nine restricted-ImageNet classes. The baseline
is the last block, the paper's choice.

    .venv/bin/python benchmarks/layer_pixel_probe.py                 # a few minutes on 2 cores
    .venv/bin/python benchmarks/layer_pixel_probe.py --layers 7 9 12
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import vqrae
from vqrae.data.images import center_crop_resize, load_image, pil_to_tensor
from vqrae.data.training import split_indices
from vqrae.eval.metrics import psnr, ssim
from vqrae.eval.semantics import knn_accuracy
from vqrae.tokenizer.semantic_eval import restricted_imagenet_label

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet-sample"


def load_images(paths: list[Path], size: int) -> torch.Tensor:
    """Centre crops of ``paths`` -> (n, 3, size, size) in [0, 1]."""
    return torch.stack([pil_to_tensor(center_crop_resize(load_image(p), size)) for p in paths])


def block_tokens(model, images: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
    """Layer-normalised patch tokens after each block in ``layers`` (1-based) -> (n, N, d).

    Runs the model's own encoder path (``encode``) with forward hooks on the blocks.
    """
    encoder = model.encoder
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}

    def keep(layer: int):
        def hook(_module, _inputs, x: torch.Tensor) -> None:
            tokens = x[:, encoder.num_prefix_tokens :]  # (B, N, d)
            out[layer].append(F.layer_norm(tokens, tokens.shape[-1:]))

        return hook

    handles = [encoder.blocks[layer - 1].register_forward_hook(keep(layer)) for layer in layers]
    try:
        with torch.no_grad():
            for start in range(0, len(images), 8):
                model.encode(images[start : start + 8])
    finally:
        for handle in handles:
            handle.remove()
    return {layer: torch.cat(chunks) for layer, chunks in out.items()}


def to_patches(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(n, 3, H, W) -> (n * N, 3 * patch * patch), tokens in raster order."""
    n = images.shape[0]
    x = images.unfold(2, patch, patch).unfold(3, patch, patch)  # (n, 3, h, w, p, p)
    return x.permute(0, 2, 3, 1, 4, 5).reshape(n * x.shape[2] * x.shape[3], -1)


def from_patches(patches: torch.Tensor, n: int, side: int, patch: int) -> torch.Tensor:
    """Inverse of :func:`to_patches` -> (n, 3, side * patch, side * patch)."""
    x = patches.reshape(n, side, side, 3, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, 3, side * patch, side * patch)


def ridge(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Weights (d + 1, out) of ``y ~ [x, 1] @ W`` with an L2 penalty ``alpha``, in float64."""
    x = torch.cat([x.double(), x.new_ones(len(x), 1, dtype=torch.float64)], dim=1)
    gram = x.T @ x + alpha * torch.eye(x.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, x.T @ y.double())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vqrae-dinov2-s-demo")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 5, 7, 8, 9, 10, 11, 12])
    parser.add_argument("--train-images", type=int, default=160)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"{data} not found: give --data an ImageNet-style image folder")
    torch.set_num_threads(args.threads)

    # whole 7 x 7 pixel patches per token: the 32 x 32 grid (encoder_scale 2), not the demo's 48
    model = vqrae.create_model(
        args.model, encoder_layer=-1, encoder_scale=2, decoder_merge=2
    ).eval()
    encoder, size = model.encoder, model.config.image_size
    side = encoder.grid_size[0]
    patch = size // side
    paths = sorted(p for p in data.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    train, val = split_indices(len(paths), args.val_images, 0)  # the trainer's split
    train = train[: args.train_images]
    labelled = [p for p in paths if restricted_imagenet_label(p.name.split("_")[0])]
    start = time.perf_counter()
    train_images = load_images([paths[i] for i in train], size)
    val_images = load_images([paths[i] for i in val], size)
    train_tokens = block_tokens(model, train_images, args.layers)
    val_tokens = block_tokens(model, val_images, args.layers)
    semantic_tokens = block_tokens(model, load_images(labelled, size), args.layers)
    names = [restricted_imagenet_label(p.name.split("_")[0]) for p in labelled]
    classes = sorted(set(names))
    labels = torch.tensor([classes.index(n) for n in names])
    print(
        f"encoded {len(train) + len(val) + len(labelled)} images in "
        f"{time.perf_counter() - start:.0f} s"
    )

    targets = to_patches(train_images, patch)
    rows = []
    for layer in args.layers:
        dim = train_tokens[layer].shape[-1]
        weights = ridge(train_tokens[layer].reshape(-1, dim), targets, args.alpha)
        x = val_tokens[layer].reshape(-1, dim).double()
        pred = torch.cat([x, x.new_ones(len(x), 1)], dim=1) @ weights
        recon = from_patches(pred.float().clamp(0, 1), len(val), side, patch)
        knn = knn_accuracy(semantic_tokens[layer].mean(dim=1), labels, k=1)
        quality = float(psnr(val_images, recon).mean()), float(ssim(val_images, recon).mean())
        rows.append((layer, *quality, knn))
    base = rows[-1] if rows[-1][0] == max(args.layers) else None
    print(
        f"\nlinear decoder on {len(train)} training images, held-out {len(val)}; "
        f"1-NN over {len(labelled)} images in {len(classes)} classes"
    )
    print(f"{'block':>5s} {'PSNR':>8s} {'SSIM':>6s} {'1-NN':>6s} {'vs last block':>22s}")
    for layer, p, s, k in rows:
        delta = f"{p - base[1]:+.2f} dB, {100 * (k - base[3]):+.1f} pt" if base else ""
        print(f"{layer:5d} {p:7.2f}  {s:.3f} {100 * k:5.1f}% {delta:>22s}")


if __name__ == "__main__":
    main()
