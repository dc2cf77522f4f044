"""Does a tokenizer keep the shapes world's colours? CIEDE2000 inside the shapes, GenEval verdicts.

Held-out scenes of the shapes world (``sample_scene`` on seeds from ``--seed-start``, default
10 000 000: training mixes draw their scenes below 1 000 000, see
:mod:`vqrae.data.synthetic`), flat shapes in GenEval's ten colours over muted grounds, are
rendered at each ``--sizes`` side, reconstructed through the tokenizer's codes (8-bit, as a
saved PNG), and measured:

- **colour**: for every object, the mean CIEDE2000 between the reconstruction and the rendered
  fill over the pixels well inside it (full coverage, the mask eroded by ``max(1, 1.5% of the
  side)`` pixels); reported as the mean over objects, the share of objects within ΔE 10, the
  mean per colour name, and the same for the ground (pixels at least that far from any object);
- **GenEval verdicts**: from each scene, every GenEval record it satisfies
  (``records_for_scene``: the six tags) plus one corrupted record per tag present
  (``corrupt_record``: wrong object, count, colour, side, swapped colours), each judged with
  GenEval's rules (``vqrae.eval.geneval``) on the detections of the project's shapes detector,
  on the render and on its reconstruction; *agreement* is the share of (image, record) pairs
  whose two verdicts are equal, and *render accuracy* the share of render verdicts equal to the
  scene's truth (``record_holds``), the detector's own error at that size.

The colour difference is CIEDE2000 (Sharma, Wu and Dalal 2005, k_L = k_C = k_H = 1),
implemented here (:func:`ciede2000`) because ``vqrae.data.shapes.colour.delta_e`` is CIE76; it
is checked against Sharma et al.'s published test pairs before every run. Optionally
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
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

import vqrae
from vqrae.data.images import pil_to_tensor, tensor_to_pil
from vqrae.data.shapes.colour import COLOUR_NAMES, srgb_to_lab
from vqrae.data.shapes.corrupt import applicable_corruptions, corrupt_record
from vqrae.data.shapes.geneval_prompts import GENEVAL_TAGS, record_holds, records_for_scene
from vqrae.data.shapes.render import object_coverage, render_scene
from vqrae.data.shapes.sampler import sample_scene
from vqrae.data.shapes.scene import Scene
from vqrae.eval.geneval import Detection, evaluate_metadata, group_detections
from vqrae.eval.shapes_detector import ShapesDetector

#: First seed of the held-out scenes (training mixes stay below 1 000 000).
HELD_OUT_SEED = 10_000_000
#: Within this CIEDE2000 an object's colour counts as kept.
KEPT_DELTA_E = 10.0

# Sharma, Wu and Dalal (2005), Table 1: (L1, a1, b1), (L2, a2, b2), CIEDE2000.
_SHARMA_PAIRS = (
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),
)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference of CIELAB arrays ``(..., 3)`` (broadcasting), k = 1."""
    lab1, lab2 = np.asarray(lab1, np.float64), np.asarray(lab2, np.float64)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0  # atan2(0, 0) = 0, the convention
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    chroma_zero = (c1p * c2p) == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma_zero, 0.0, dh)
    d_l, d_c = l2 - l1, c2p - c1p
    d_h = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)
    l_bar, c_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(
        np.abs(h1p - h2p) <= 180,
        h_sum / 2,
        np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2),
    )
    h_bar = np.where(chroma_zero, h_sum, h_bar)
    t = (
        1
        - 0.17 * np.cos(np.radians(h_bar - 30))
        + 0.24 * np.cos(np.radians(2 * h_bar))
        + 0.32 * np.cos(np.radians(3 * h_bar + 6))
        - 0.20 * np.cos(np.radians(4 * h_bar - 63))
    )
    d_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar
    s_h = 1 + 0.015 * c_bar * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    terms = (d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h)
    return np.sqrt(np.maximum(terms, 0.0))


def check_ciede2000() -> None:
    """Raise if :func:`ciede2000` misses one of Sharma et al.'s test pairs by 1e-4 (either order)."""
    for lab1, lab2, expected in _SHARMA_PAIRS:
        for got in (
            ciede2000(np.array(lab1), np.array(lab2)),
            ciede2000(np.array(lab2), np.array(lab1)),
        ):
            if abs(float(got) - expected) > 1e-4:
                raise AssertionError(
                    f"CIEDE2000{lab1, lab2} = {float(got):.4f}, expected {expected}"
                )


# ----------------------------------------------------------------------------- scenes
@dataclass
class HeldOutScene:
    """One held-out scene with the GenEval records it is judged against and their truth."""

    seed: int
    scene: Scene
    records: list[dict]
    truth: list[bool]


def held_out_scenes(count: int, seed_start: int = HELD_OUT_SEED) -> list[HeldOutScene]:
    """``count`` scenes from consecutive seeds, each with its true records and one corrupted
    record per tag present (the corruption drawn from the scene's own seed)."""
    out = []
    for seed in range(seed_start, seed_start + count):
        scene = sample_scene(np.random.default_rng(seed))
        rng = np.random.default_rng([seed, 1])
        records = records_for_scene(scene)
        first_of_tag = {}
        for record in records:
            first_of_tag.setdefault(record["tag"], record)
        for record in first_of_tag.values():
            kinds = applicable_corruptions(record)
            records.append(corrupt_record(rng, record, kinds[int(rng.integers(len(kinds)))]))
        truth = [record_holds(scene, r) for r in records]
        out.append(HeldOutScene(seed, scene, records, truth))
    return out


def object_interiors(scene: Scene, size: int, erode: int) -> list[np.ndarray]:
    """A boolean mask ``(size, size)`` per object: fully covered pixels, eroded by ``erode``."""
    masks = []
    for obj in scene.objects:
        (px, py), alpha = object_coverage(obj, size)
        mask = np.zeros((size, size), bool)
        h, w = alpha.shape
        mask[py : py + h, px : px + w] = alpha >= 0.999
        masks.append(ndimage.binary_erosion(mask, iterations=erode) if erode else mask)
    return masks


def ground_mask(scene: Scene, size: int, margin: int) -> np.ndarray:
    """Pixels at least ``margin`` pixels from every object's coverage."""
    covered = np.zeros((size, size), bool)
    for obj in scene.objects:
        (px, py), alpha = object_coverage(obj, size)
        h, w = alpha.shape
        covered[py : py + h, px : px + w] |= alpha > 0
    return ~ndimage.binary_dilation(covered, iterations=margin)


# ----------------------------------------------------------------------------- measuring
@dataclass
class SizeResult:
    """What one model scores at one image size."""

    model: str
    size: int
    codes: str
    objects: int
    mean_delta_e: float
    within_10: float
    per_colour: dict[str, float]
    ground_delta_e: float
    agreement: float
    render_accuracy: float
    records: int
    per_tag_agreement: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def verdicts(detections: Sequence[Detection], records: Sequence[dict]) -> list[bool]:
    """GenEval's verdict on each record from one image's detections."""
    kept_by_tag = {tag: group_detections(detections, tag) for tag in {r["tag"] for r in records}}
    return [evaluate_metadata(kept_by_tag[r["tag"]], r)[0] for r in records]


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


def measure(
    model: vqrae.VQRAE,
    name: str,
    scenes: Sequence[HeldOutScene],
    size: int,
    detector: ShapesDetector,
    continuous: bool = False,
    samples: Path | None = None,
) -> SizeResult:
    """Render every scene at ``size``, reconstruct, and score colours and verdicts."""
    start = time.perf_counter()
    renders = [render_scene(s.scene, size) for s in scenes]
    recons = reconstruct(model, renders, continuous)
    erode = max(1, round(0.015 * size))
    object_de: list[float] = []
    by_colour: dict[str, list[float]] = defaultdict(list)
    ground_de: list[float] = []
    agree: list[bool] = []
    correct: list[bool] = []
    tag_agree: dict[str, list[bool]] = defaultdict(list)
    for item, render, recon in zip(scenes, renders, recons, strict=True):
        lab = srgb_to_lab(np.asarray(recon, np.float64))  # (S, S, 3)
        for obj, mask in zip(
            item.scene.objects, object_interiors(item.scene, size, erode), strict=True
        ):
            if not mask.any():
                continue
            de = float(ciede2000(lab[mask], srgb_to_lab(np.array(obj.rgb, np.float64))).mean())
            object_de.append(de)
            by_colour[obj.colour].append(de)
        ground = ground_mask(item.scene, size, erode)
        if ground.any():
            reference = srgb_to_lab(np.asarray(render, np.float64))
            ground_de.append(float(ciede2000(lab[ground], reference[ground]).mean()))
        on_render = verdicts(detector.detect(render), item.records)
        on_recon = verdicts(detector.detect(recon), item.records)
        for record, a, b, truth in zip(item.records, on_render, on_recon, item.truth, strict=True):
            agree.append(a == b)
            correct.append(a == truth)
            tag_agree[record["tag"]].append(a == b)
    if samples is not None:
        _save_samples(renders[:8], recons[:8], samples)
    grid = model.grid_for_size(size, size)
    return SizeResult(
        model=name,
        size=size,
        codes=f"{grid[0]}x{grid[1]}",
        objects=len(object_de),
        mean_delta_e=float(np.mean(object_de)),
        within_10=float(np.mean(np.array(object_de) <= KEPT_DELTA_E)),
        per_colour={c: float(np.mean(by_colour[c])) for c in COLOUR_NAMES if by_colour[c]},
        ground_delta_e=float(np.mean(ground_de)) if ground_de else math.nan,
        agreement=float(np.mean(agree)),
        render_accuracy=float(np.mean(correct)),
        records=len(agree),
        per_tag_agreement={t: float(np.mean(tag_agree[t])) for t in GENEVAL_TAGS if tag_agree[t]},
        seconds=time.perf_counter() - start,
    )


def _save_samples(renders: list[Image.Image], recons: list[Image.Image], path: Path) -> None:
    size = renders[0].width
    sheet = Image.new("RGB", (size * len(renders), size * 2))
    for i, (a, b) in enumerate(zip(renders, recons, strict=True)):
        sheet.paste(a, (i * size, 0))
        sheet.paste(b, (i * size, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


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
                result = measure(model, label, scenes, size, detector, continuous, sheet)
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
