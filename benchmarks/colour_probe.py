"""Where a tokenizer loses colour: probes from its token representations to each token's colour.

For shapes-world scenes at 224 px, every token whose image area (``14 / encoder_scale`` px
square) lies fully inside one object, or fully on the ground, is labelled with that area's mean
CIELAB colour. A linear probe (ridge regression) and a small MLP probe (one hidden layer of
256, GELU) are fitted on the tokens of training scenes and scored by CIEDE2000 on held-out
scenes (seeds from ``HELD_OUT_SEED``, as in ``shapes_colours.py``), at these taps:

- ``block K``: the encoder's hidden state after block K (1-based), through the final
  LayerNorm without affine (as the features are);
- ``features Z``: the encoder's output, what the quantizer reads (block 8 for the demo);
- ``codes``: the decoder's input, ``post_quant_proj`` of the nearest codes;
- and, for reference, the tokenizer's own reconstruction, pooled over the same areas.

If a probe recovers colour from Z but the reconstruction does not, the decoder (or the codes)
is what loses it, and training the decoder on colourful data can fix it; if no probe recovers it
from Z, the encoder must change (stage 2).

    .venv/bin/python benchmarks/colour_probe.py                        # shipped demo model
    .venv/bin/python benchmarks/colour_probe.py --model runs/x/model --blocks 2,5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import vqrae
from vqrae.data.images import pil_to_tensor
from vqrae.data.shapes.colour import srgb_to_lab
from vqrae.data.shapes.render import object_coverage, render_scene
from vqrae.data.shapes.sampler import sample_scene
from vqrae.data.shapes.scene import Scene

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes_colours import HELD_OUT_SEED, KEPT_DELTA_E, check_ciede2000, ciede2000  # noqa: E402


def token_targets(scene: Scene, size: int, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per token of a ``grid x grid`` code grid: the mean Lab colour of its area in the render,
    whether the area is wholly inside one object, and whether it is wholly ground."""
    image = torch.from_numpy(np.asarray(render_scene(scene, size), np.float64)).permute(2, 0, 1)
    covered = torch.zeros(len(scene.objects), size, size, dtype=torch.float64)
    for k, obj in enumerate(scene.objects):
        (px, py), alpha = object_coverage(obj, size)
        h, w = alpha.shape
        covered[k, py : py + h, px : px + w] = torch.from_numpy(alpha)
    mean_rgb = F.adaptive_avg_pool2d(image[None], grid)[0].permute(1, 2, 0).numpy()  # (g, g, 3)
    pooled = F.adaptive_avg_pool2d(covered[None], grid)[0].numpy()  # (K, g, g)
    inside = (pooled >= 0.999).any(axis=0)
    ground = F.adaptive_max_pool2d(covered.sum(0)[None, None], grid)[0, 0].numpy() == 0
    return srgb_to_lab(mean_rgb).reshape(-1, 3), inside.ravel(), ground.ravel()


@torch.no_grad()
def taps(
    model: vqrae.VQRAE, images: torch.Tensor, blocks: list[int], normed: bool = True
) -> dict[str, torch.Tensor]:
    """Token representations (B, N, d) of ``images`` at each tap, and the pooled recon Lab.

    Hidden blocks go through the final LayerNorm without affine when ``normed`` (as the
    features do), else they are the raw residual stream (whose token norms the norm removes).
    """
    encoder = model.encoder
    hidden: dict[int, torch.Tensor] = {}
    hooks = [
        encoder.blocks[b - 1].register_forward_hook(
            lambda _m, _i, out, b=b: hidden.__setitem__(b, out)
        )
        for b in blocks
    ]
    try:
        features = model.encode(images)  # (B, N, d)
    finally:
        for hook in hooks:
            hook.remove()
    prefix = encoder.num_prefix_tokens
    out = {
        f"block {b}{'' if normed else ' (no norm)'}": (
            F.layer_norm(hidden[b], hidden[b].shape[-1:]) if normed else hidden[b]
        )[:, prefix:]
        for b in blocks
    }
    out[f"features Z (block {len(encoder.blocks)})"] = features
    quantized = model.quantize(features)
    out["codes (decoder input)"] = model.post_quant_proj(quantized.codes)
    grid = model.grid_for(images)
    recon = model.decode(quantized.codes, grid)
    out["reconstruction"] = F.adaptive_avg_pool2d(recon, grid).flatten(2).transpose(1, 2)
    return out


def fit_ridge(x: torch.Tensor, y: torch.Tensor, alpha: float = 1e-3) -> nn.Module:
    """Ridge regression y ~ x (standardised), the penalty ``alpha`` x the mean eigenvalue."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mean) / std
    xs1 = torch.cat([xs, torch.ones(len(xs), 1, dtype=xs.dtype)], dim=1).double()
    gram = xs1.T @ xs1
    gram += alpha * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    weight = torch.linalg.solve(gram, xs1.T @ y.double()).float()  # (d + 1, 3)

    class Ridge(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return ((t - mean) / std) @ weight[:-1] + weight[-1]

    return Ridge()


def fit_mlp(x: torch.Tensor, y: torch.Tensor, steps: int = 1500, seed: int = 0) -> nn.Module:
    """A 256-wide GELU MLP fitted by Adam on minibatches of 4096 tokens."""
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    net = nn.Sequential(nn.Linear(x.shape[1], 256), nn.GELU(), nn.Linear(256, 3))
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    target = y / 50.0
    for step in range(steps):
        batch = torch.randint(0, len(x), (4096,))
        loss = F.mse_loss(net((x[batch] - mean) / std), target[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == steps * 2 // 3:
            for group in optimizer.param_groups:
                group["lr"] = 4e-4

    class Probe(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return net((t - mean) / std) * 50.0

    return Probe()


def collect(
    model: vqrae.VQRAE, seeds: range, blocks: list[int], size: int, normed: bool = True
) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray, np.ndarray]:
    """Tap representations and targets of the usable tokens of the scenes of ``seeds``."""
    grid = model.grid_for_size(size, size)[0]
    reps: dict[str, list[torch.Tensor]] = {}
    labs, insides, grounds = [], [], []
    seeds = list(seeds)
    for start in range(0, len(seeds), 8):
        scenes = [sample_scene(np.random.default_rng(s)) for s in seeds[start : start + 8]]
        images = torch.stack([pil_to_tensor(render_scene(s, size)) for s in scenes])
        tapped = taps(model, images, blocks, normed)
        for scene, i in zip(scenes, range(len(scenes)), strict=True):
            lab, inside, ground = token_targets(scene, size, grid)
            use = inside | ground
            labs.append(lab[use])
            insides.append(inside[use])
            grounds.append(ground[use])
            for name, t in tapped.items():
                reps.setdefault(name, []).append(t[i][torch.from_numpy(use)])
    return (
        {k: torch.cat(v) for k, v in reps.items()},
        np.concatenate(labs),
        np.concatenate(insides),
        np.concatenate(grounds),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vqrae-dinov2-s-demo")
    parser.add_argument("--blocks", default="2,5", help="hidden blocks to probe (1-based)")
    parser.add_argument("--train-scenes", type=int, default=64)
    parser.add_argument("--test-scenes", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--no-norm", action="store_true", help="probe the raw residual stream of the blocks"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    check_ciede2000()
    torch.set_num_threads(args.threads)
    blocks = [int(b) for b in args.blocks.split(",") if b]
    model = vqrae.VQRAE.from_pretrained(args.model).eval()
    start = time.perf_counter()
    normed = not args.no_norm
    train, train_lab, _, _ = collect(model, range(args.train_scenes), blocks, args.size, normed)
    held_out = range(HELD_OUT_SEED, HELD_OUT_SEED + args.test_scenes)
    test, test_lab, inside, _ = collect(model, held_out, blocks, args.size, normed)
    print(
        f"{args.model}: {len(train_lab)} training tokens ({args.train_scenes} scenes), "
        f"{len(test_lab)} held-out tokens ({inside.sum()} inside objects), "
        f"{time.perf_counter() - start:.0f} s to encode"
    )
    target = torch.from_numpy(train_lab).float()
    print("| tap | probe | ΔE00 inside objects | ≤ ΔE 10 | ΔE00 on ground |")
    print("|---|---|---|---|---|")
    for name in train:
        if name == "reconstruction":
            probes = {"none (the decoder's output)": None}
        else:
            probes = {"linear": fit_ridge(train[name], target), "MLP": fit_mlp(train[name], target)}
        for probe_name, probe in probes.items():
            with torch.no_grad():
                x = test[name]
                pred = srgb_to_lab(x.numpy() * 255.0) if probe is None else probe(x).numpy()
            de = ciede2000(pred, test_lab)
            print(
                f"| {name} | {probe_name} | {de[inside].mean():.2f} | "
                f"{100 * (de[inside] <= KEPT_DELTA_E).mean():.1f}% | {de[~inside].mean():.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
