"""Tokenizer training throughput, phase by phase, so the slowest part is known.

Times one training step of a registered variant split into its phases — encoder forward,
quantizer, decoder forward, LPIPS forward, backward of everything, discriminator step — and
prints images/second for each and its share of the step. The baseline named in the ratio column
is the whole step.

    .venv/bin/python benchmarks/train_throughput.py --model vqrae-dinov2-s-demo --size 224
    .venv/bin/python benchmarks/train_throughput.py --stage 2 --gan
    .venv/bin/python benchmarks/train_throughput.py --perceptual-crop 112
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
import torch.nn.functional as F

import vqrae
from vqrae.eval.perceptual import load_lpips
from vqrae.tokenizer.discriminator import PatchDiscriminator, hinge_d_loss
from vqrae.utils.runtime import autocast, default_precision, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Timer:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, list[float]] = defaultdict(list)
        self._last = 0.0

    def start(self) -> None:
        _sync(self.device)
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        _sync(self.device)
        now = time.perf_counter()
        self.times[name].append(now - self._last)
        self._last = now


def run(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    precision = default_precision(device)
    torch.manual_seed(0)
    model = vqrae.create_model(args.model, pretrained_encoder=False).to(device).train()
    model.encoder.requires_grad_(args.stage == 2)
    lpips = load_lpips(device)
    disc = PatchDiscriminator().to(device) if args.gan else None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    images = torch.rand(args.batch_size, 3, args.size, args.size, device=device)
    timer = Timer(device)
    for step in range(args.warmup + args.steps):
        timer.start()
        with autocast(device, precision):
            ctx = torch.enable_grad() if args.stage == 2 else torch.no_grad()
            with ctx:
                features = model.encode(images)
            timer.lap("encoder forward")
            quantized = model.quantize(features)
            timer.lap("quantizer forward")
            recon = model.decode(quantized.codes, model.grid_for(images), clamp=False)
            timer.lap("decoder forward")
            crop = args.perceptual_crop or args.size
            perceptual = lpips(recon.float()[..., :crop, :crop], images[..., :crop, :crop]).mean()
            timer.lap("lpips forward")
            loss = F.mse_loss(recon.float(), images) + 1.1 * perceptual + quantized.loss
            if disc is not None:
                loss = loss - 0.1 * disc(recon.float()).mean()
        loss.backward()
        timer.lap("backward (all)")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timer.lap("optimizer")
        if disc is not None:
            with autocast(device, precision):
                d_loss = hinge_d_loss(disc(images), disc(recon.detach().float()))
            d_loss.backward()
            disc.zero_grad(set_to_none=True)
            timer.lap("discriminator step")
        if step < args.warmup:
            timer.times.clear()
    medians = {name: statistics.median(values) for name, values in timer.times.items()}
    total = sum(medians.values())
    print(
        f"model={args.model} stage={args.stage} size={args.size} batch={args.batch_size} "
        f"device={device} precision={precision} threads={torch.get_num_threads()}"
    )
    print(f"{'phase':22s} {'s/step':>8s} {'share':>7s} {'img/s':>9s}")
    for name, value in medians.items():
        print(f"{name:22s} {value:8.3f} {value / total:7.1%} {args.batch_size / value:9.1f}")
    print(f"{'whole step':22s} {total:8.3f} {1:7.1%} {args.batch_size / total:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vqrae-dinov2-s-demo")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stage", type=int, default=1, choices=(1, 2))
    parser.add_argument("--gan", action="store_true", help="include the discriminator")
    parser.add_argument("--perceptual-crop", type=int, default=0, help="LPIPS window (0: whole)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="auto")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
