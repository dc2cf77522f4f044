"""How well a tokenizer keeps the shapes world: CIEDE2000 inside the shapes and GenEval verdicts
on reconstructions of held-out scenes (``benchmarks/shapes_colours.py`` reports it).

- **colour**: for every object, the mean CIEDE2000 between the reconstruction and the rendered
  fill over the pixels well inside it (full coverage, the mask eroded by ``max(1, 1.5% of the
  side)`` pixels): the mean over objects, the share within ΔE 10, the mean per colour name, and
  the same for the ground (pixels at least that far from any object);
- **GenEval verdicts**: from each scene, every GenEval record it satisfies (the six tags) plus
  one corrupted record per tag present (wrong object, count, colour, side, swapped colours),
  judged with GenEval's rules on the shapes detector's detections, on the render and on its
  reconstruction; *agreement* is the share of (image, record) pairs whose verdicts are equal,
  *render accuracy* the share of render verdicts equal to the scene's truth (the detector's
  own error at that size).

CIEDE2000 is Sharma, Wu and Dalal (2005), k_L = k_C = k_H = 1 (``vqrae.data.shapes.colour``'s
``delta_e`` is CIE76); :func:`check_ciede2000` checks it against their published test pairs.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

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


def measure(
    round_trip: Callable[[list[Image.Image]], list[Image.Image]],
    name: str,
    scenes: Sequence[HeldOutScene],
    size: int,
    detector: ShapesDetector,
    codes: str = "",
    samples: Path | None = None,
) -> SizeResult:
    """Render every scene at ``size``, pass the renders through ``round_trip`` (a tokenizer's
    reconstruction, as 8-bit images), and score colours and verdicts.

    Args:
        codes: the code grid at this size, for the report (e.g. ``"48x48"``).
        samples: where to save a sheet of the first eight renders over their reconstructions.
    """
    start = time.perf_counter()
    renders = [render_scene(s.scene, size) for s in scenes]
    recons = round_trip(renders)
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
        save_samples(renders[:8], recons[:8], samples)
    return SizeResult(
        model=name,
        size=size,
        codes=codes,
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


def save_samples(renders: list[Image.Image], recons: list[Image.Image], path: Path) -> None:
    """A sheet: renders on the top row, their reconstructions below."""
    size = renders[0].width
    sheet = Image.new("RGB", (size * len(renders), size * 2))
    for i, (a, b) in enumerate(zip(renders, recons, strict=True)):
        sheet.paste(a, (i * size, 0))
        sheet.paste(b, (i * size, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
