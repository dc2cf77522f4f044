"""Does a tokenizer keep the shapes world's colours? CIEDE2000 inside the shapes, GenEval verdicts.

Held-out scenes of the shapes world (``sample_scene`` on seeds from ``--seed-start``, default
10 000 000: training mixes draw their scenes below 1 000 000, see
:mod:`vqrae.data.synthetic`), flat shapes in GenEval's ten colours over muted grounds, are
rendered at each ``--sizes`` side, reconstructed through the tokenizer's codes (8-bit, as a
saved PNG), and measured:

measured by :mod:`vqrae.eval.shapes_colours` (CIEDE2000 inside each object and on the ground,
GenEval verdicts on the reconstruction against those on the render). Optionally
(``--continuous``) the continuous quantizer input is decoded too (no quantization), which
separates what the codes lose from what the decoder loses.

    .venv/bin/python benchmarks/shapes_colours.py                                # shipped model
    .venv/bin/python benchmarks/shapes_colours.py --model runs/x/model --sizes 224,84,56
    .venv/bin/python benchmarks/shapes_colours.py --model runs/x/model --baseline none
    .venv/bin/python benchmarks/shapes_colours.py --model runs/x/model,runs/y/model --out runs/c

The last column group compares the model with ``--baseline`` (default: the shipped
``vqrae-dinov2-s-demo``) on the same scenes: the ratio of mean ΔE (baseline / model: how many
times smaller the error is) and of the within-10 share and agreement (model / baseline).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from PIL import Image

import vqrae
from vqrae.data.images import pil_to_tensor, tensor_to_pil
from vqrae.data.shapes.colour import COLOUR_NAMES
from vqrae.eval.shapes_colours import (
    HELD_OUT_SEED,
    SizeResult,
    check_ciede2000,
    held_out_scenes,
    measure,
)
from vqrae.eval.shapes_detector import ShapesDetector


@torch.no_grad()
def reconstruct(
    model: vqrae.VQRAE, images: list[Image.Image], continuous: bool, batch: int = 8
) -> list[Image.Image]:
    """Round trips through the codes (or the continuous quantizer input), as 8-bit images."""
    out = []
    for start in range(0, len(images), batch):
        x = torch.stack([pil_to_tensor(im) for im in images[start : start + batch]])
        if continuous:
            z = model.quant_proj(model.encode(x))  # (b, N, e), no nearest code
            recon = model.decode(z, model.grid_for(x))
        else:
            recon = model.reconstruct(x)
        out.extend(tensor_to_pil(r) for r in recon)  # 8-bit, as saved
    return out


# ----------------------------------------------------------------------------- report
def format_table(results: Sequence[SizeResult], baseline: dict[int, SizeResult]) -> str:
    """A Markdown table: one row per (model, size), with ratios against the baseline's row."""
    short = {c: c[:3] for c in COLOUR_NAMES}
    head = (
        "| model | size | codes | mean ΔE00 | ≤ ΔE 10 | ground ΔE00 | agreement | render acc. | "
        + " | ".join(short[c] for c in COLOUR_NAMES)
        + " | ΔE ratio | ≤10 ratio | agreement ratio |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        base = baseline.get(r.size)
        ratios = ["—"] * 3
        if base is not None and base is not r:
            ratios = [
                f"{base.mean_delta_e / r.mean_delta_e:.2f}x",
                f"{r.within_10 / max(base.within_10, 1e-9):.2f}x",
                f"{r.agreement / max(base.agreement, 1e-9):.3f}x",
            ]
        colours = [f"{r.per_colour[c]:.1f}" if c in r.per_colour else "—" for c in COLOUR_NAMES]
        lines.append(
            f"| {r.model} | {r.size} | {r.codes} | {r.mean_delta_e:.2f} | {100 * r.within_10:.1f}% "
            f"| {r.ground_delta_e:.2f} | {100 * r.agreement:.1f}% | {100 * r.render_accuracy:.1f}% | "
            + " | ".join(colours)
            + " | "
            + " | ".join(ratios)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="vqrae-dinov2-s-demo",
        help="trained names or directories, comma-separated",
    )
    parser.add_argument(
        "--baseline",
        default="vqrae-dinov2-s-demo",
        help="trained name or directory to compare with ('none': no baseline)",
    )
    parser.add_argument("--scenes", type=int, default=100, help="held-out scenes per size")
    parser.add_argument(
        "--sizes", default="224", help="comma-separated image sides (multiples of 14)"
    )
    parser.add_argument("--seed-start", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--continuous", action="store_true", help="also decode without quantizing")
    parser.add_argument("--out", default="", help="folder for results.json and sample sheets")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    check_ciede2000()
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    scenes = held_out_scenes(args.scenes, args.seed_start)
    detector = ShapesDetector()
    out = Path(args.out) if args.out else None
    names = [m for m in args.model.split(",") if m]
    if args.baseline.lower() != "none" and args.baseline not in names:
        names.insert(0, args.baseline)
    results: list[SizeResult] = []
    for name in names:
        model = vqrae.VQRAE.from_pretrained(name).eval()
        for size in sizes:
            if size % model.size_multiple:
                raise SystemExit(f"--sizes: {size} is not a multiple of {model.size_multiple}")
            modes = [False, True] if args.continuous else [False]
            for continuous in modes:
                label = f"{name} (continuous)" if continuous else name
                tag = name.strip("/").replace("/", "_")
                sheet = (
                    out / f"{tag}{'-continuous' if continuous else ''}-{size}.png" if out else None
                )
                grid = model.grid_for_size(size, size)
                result = measure(
                    lambda images, m=model, c=continuous: reconstruct(m, images, c),
                    label, scenes, size, detector, f"{grid[0]}x{grid[1]}", sheet,
                )  # fmt: skip
                results.append(result)
                print(
                    f"{label} at {size} px: ΔE00 {result.mean_delta_e:.2f}, "
                    f"{100 * result.within_10:.1f}% within 10, agreement {100 * result.agreement:.1f}% "
                    f"({result.seconds:.0f} s)",
                    flush=True,
                )
    has_baseline = args.baseline.lower() != "none"
    baseline = {r.size: r for r in results if r.model == args.baseline} if has_baseline else {}
    print(
        f"\n{args.scenes} held-out scenes (seeds {args.seed_start}..{args.seed_start + args.scenes - 1}), "
        f"{results[0].objects} objects and {results[0].records} GenEval records per size\n"
    )
    print(format_table(results, baseline))
    for r in results:
        tags = ", ".join(f"{t} {100 * a:.1f}%" for t, a in r.per_tag_agreement.items())
        print(f"{r.model} {r.size} px agreement per tag: {tags}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        payload = {"arguments": vars(args), "results": [asdict(r) for r in results]}
        (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
