"""Short stage-1 runs on cached encoder features, to compare quantizer recipes at equal steps.

Every variant trains the same model (projection, SimVQ, decoder; encoder frozen) from the same
seed on the same cached features with L2 + the SimVQ loss, batch 8, AdamW (lr 4e-4, betas
0.9/0.99, 100 warm-up steps, clip 1.0), and is evaluated on held-out images of the same split.
The baseline is the paper's initialisation (Gaussian codebook, random projection, all trained at
the same rate). Variants:

- ``continuous``: no quantizer (the decoder reads the projected features): the ceiling;
- ``gaussian``: the baseline;
- ``whiten`` / ``data``: the trainer's ``calibration`` options, projection at the full rate;
- ``data-slow``: ``data`` with the projection at 1/100 of the rate.

    .venv/bin/python benchmarks/stage1_probe.py --steps 400          # vqrae-dinov2-s-demo
    .venv/bin/python benchmarks/stage1_probe.py --variants data data-slow --steps 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import vqrae
from vqrae.data.training import TrainImageDataset, open_collection, split_indices
from vqrae.eval.metrics import psnr, ssim

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet-sample"
VARIANTS = {  # name: (calibration, projection lr scale, quantize)
    "continuous": ("data", 1.0, False),
    "gaussian": (None, 1.0, True),
    "whiten": ("whiten", 1.0, True),
    "data": ("data", 1.0, True),
    "data-slow": ("data", 0.01, True),
}


def encode_split(model, dataset, indices) -> tuple[torch.Tensor, torch.Tensor]:
    images, features = [], []
    with torch.no_grad():
        for start in range(0, len(indices), 8):
            batch = torch.stack([dataset[i] for i in indices[start : start + 8]])
            images.append(batch)
            features.append(model.encode(batch))
    return torch.cat(images), torch.cat(features)  # (n, 3, S, S), (n, T, d)


def forward(model, features: torch.Tensor, quantize: bool, grid: tuple[int, int]):
    z = model.quant_proj(features)  # (B, T, e)
    if not quantize:
        return model.decode(z, grid, clamp=False), z.new_zeros(()), None
    out = model.quantizer(z)
    return model.decode(out.codes, grid, clamp=False), out.loss, out.indices


def run_variant(name: str, args, data: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    calibration, proj_scale, quantize = VARIANTS[name]
    torch.manual_seed(0)
    model = vqrae.create_model(args.model, **args.override).train()
    model.encoder.requires_grad_(False)
    fit = data["train_features"][: args.calibration_images]
    if calibration == "data":
        model.calibrate_codebook(fit)
    elif calibration == "whiten":
        model.calibrate_quantizer_input(fit)
    projection = list(model.quant_proj.parameters())
    rest = [
        p
        for n, p in model.named_parameters()
        if p.requires_grad and not n.startswith(("encoder.", "quant_proj."))
    ]
    groups = [{"params": rest, "lr": args.lr}, {"params": projection, "lr": args.lr * proj_scale}]
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=1e-4)
    base = [group["lr"] for group in optimizer.param_groups]
    side, _ = model.grid_for(data["train_images"])
    grid = (side, side)
    generator = torch.Generator().manual_seed(0)
    rows, start = [], time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                recon, indices = [], []
                for i in range(0, len(data["val_features"]), 8):
                    r, _, idx = forward(model, data["val_features"][i : i + 8], quantize, grid)
                    recon.append(r.clamp(0, 1))
                    indices.append(idx)
                recon = torch.cat(recon)
            usage = None
            if quantize:
                usage = torch.cat(indices).unique().numel() / model.config.codebook_size
            rows.append(
                {
                    "step": step,
                    "psnr": float(psnr(data["val_images"], recon).mean()),
                    "ssim": float(ssim(data["val_images"], recon).mean()),
                    "usage": usage,
                    "seconds": time.perf_counter() - start,
                }
            )
            print(f"  {name:11s} step {step:5d}: PSNR {rows[-1]['psnr']:.2f} dB", flush=True)
            model.train()
            if step == args.steps:
                break
        pick = torch.randint(0, len(data["train_features"]), (8,), generator=generator)
        for group, lr in zip(optimizer.param_groups, base, strict=True):
            group["lr"] = lr * min(1.0, (step + 1) / 100)
        recon, quant_loss, _ = forward(model, data["train_features"][pick], quantize, grid)
        loss = F.mse_loss(recon, data["train_images"][pick]) + quant_loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimizer.step()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vqrae-dinov2-s-demo")
    parser.add_argument("--override", type=lambda s: dict([s.split("=")]), action="append")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--train-images", type=int, default=288)
    parser.add_argument("--val-images", type=int, default=32)
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--cache", default="runs/stage1_probe_features.pt")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.override = {k: int(v) for item in args.override or [] for k, v in item.items()}
    if not Path(args.data).exists():
        raise SystemExit(f"{args.data} not found: give --data an image folder")
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    key = (args.model, tuple(sorted(args.override.items())), args.train_images, args.val_images)
    data = torch.load(cache, weights_only=False) if cache.is_file() else {}
    if data.get("key") != key:
        model = vqrae.create_model(args.model, **args.override).eval()
        collection = open_collection(args.data)
        train, val = split_indices(len(collection), args.val_images, 0)
        dataset = TrainImageDataset(collection, model.config.image_size, train=False)
        data = {"key": key}
        data["train_images"], data["train_features"] = encode_split(
            model, dataset, train[: args.train_images]
        )
        data["val_images"], data["val_features"] = encode_split(model, dataset, val)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, cache)
    results = {name: run_variant(name, args, data) for name in args.variants}
    reference = results.get("gaussian")
    print(
        f"\n{'variant':12s} {'step':>5s} {'PSNR':>8s} {'SSIM':>6s} {'usage':>7s} {'vs gaussian':>12s}"
    )
    for name, rows in results.items():
        for row in rows:
            usage = "-" if row["usage"] is None else f"{100 * row['usage']:.1f}%"
            gain = ""
            if reference is not None:
                match = [r for r in reference if r["step"] == row["step"]]
                gain = f"{row['psnr'] - match[0]['psnr']:+.2f} dB" if match else ""
            print(
                f"{name:12s} {row['step']:5d} {row['psnr']:7.2f}  {row['ssim']:.3f} "
                f"{usage:>7s} {gain:>12s}"
            )


if __name__ == "__main__":
    main()
