"""How much of a VFM token the quantizer keeps at initialisation, by calibration.

Baseline: SimVQ as initialised in its paper (a frozen Gaussian codebook, W = identity) behind the
d->e projection's default (random) initialisation. Compared with the two calibrations the trainer
offers (``calibration: whiten`` and ``calibration: data``), fitted on the features of the first
training images and measured on held-out images of the same split:

- kept variance: ``1 - ||q(z) - z||^2 / ||z - mean||^2`` in the code space (the share of a token's
  variance its nearest code carries; 0 means the code says nothing about the token);
- usage and perplexity of the codes over the held-out tokens.

    .venv/bin/python benchmarks/quantizer_calibration.py               # vqrae-dinov2-s-demo
    .venv/bin/python benchmarks/quantizer_calibration.py --fit-images 64 --test-images 32
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

import vqrae
from vqrae.data.training import TrainImageDataset, open_collection, split_indices
from vqrae.eval.codebook import codebook_perplexity

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet-sample"


def features_of(model, dataset, indices, batch: int = 8) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, len(indices), batch):
            images = [dataset[i] for i in indices[start : start + batch]]
            images = torch.stack([x for x in images if x is not None])
            out.append(model.encode(images))
    return torch.cat(out)  # (n, T, d)


def measure(model, features: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        z = model.quant_proj(features.reshape(-1, features.shape[-1]))  # (T, e)
        out = model.quantizer.eval()(z[None])
        error = (out.codes[0] - z).pow(2).sum() / (z - z.mean(0)).pow(2).sum()
        counts = torch.bincount(out.indices.reshape(-1), minlength=model.config.codebook_size)
    return {
        "kept": float(1 - error),
        "usage": float((counts > 0).float().mean()),
        "perplexity": codebook_perplexity(counts.numpy()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vqrae-dinov2-s-demo")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--fit-images", type=int, default=128)
    parser.add_argument("--test-images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"{args.data} not found: give --data an image folder")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = vqrae.create_model(args.model).eval()
    collection = open_collection(args.data)
    train, held_out = split_indices(len(collection), args.test_images, 0)
    dataset = TrainImageDataset(collection, base.config.image_size, train=False)
    fit = features_of(base, dataset, train[: args.fit_images])
    test = features_of(base, dataset, held_out)
    print(
        f"{args.model}: {base.config.codebook_size} x {base.config.codebook_dim} codes, "
        f"{fit.shape[0]} fit / {test.shape[0]} held-out images, {test.shape[1]} tokens each"
    )
    rows = {"baseline (random projection, Gaussian codebook)": measure(base, test)}
    for name, calibrate in (
        ("whiten", lambda m: m.calibrate_quantizer_input(fit)),
        ("data", lambda m: m.calibrate_codebook(fit)),
    ):
        model = copy.deepcopy(base)
        calibrate(model)
        rows[f"calibration: {name}"] = measure(model, test)
    reference = rows["baseline (random projection, Gaussian codebook)"]
    print(f"{'':50s} {'kept variance':>14s} {'usage':>8s} {'perplexity':>11s} {'ppl ratio':>10s}")
    for name, row in rows.items():
        ratio = row["perplexity"] / reference["perplexity"]
        print(
            f"{name:50s} {row['kept']:14.3f} {100 * row['usage']:7.1f}% "
            f"{row['perplexity']:11.1f} {ratio:9.2f}x"
        )


if __name__ == "__main__":
    main()
