"""How right the GenEval scorer is on the shapes world: clean renders, corruptions, degradations.

For ``n`` GenEval prompts (the six tags in turn), one scene that satisfies each record and one
scene per applicable corruption (:mod:`vqrae.data.shapes.corrupt`) are rendered; each image is
scored against the original record, clean and after each degradation (a stand-in for
tokenizer reconstructions and generated images). Reported: the share of correct images
accepted and the share of corrupted images rejected, per degradation.

Run::

    python -m vqrae.eval.geneval_probe --n 120 --sizes 128 256

Measured with that command (120 correct and 220 corrupted images per row; correct accepted /
corrupted rejected):

===========  ==============  ==============
degradation  128 px          256 px
===========  ==============  ==============
clean        100.0 / 100.0   100.0 / 100.0
blur1        100.0 / 100.0   100.0 / 100.0
blur2        80.0 /  97.7    100.0 / 100.0
noise10      100.0 / 100.0   100.0 / 100.0
noise20      90.8 /  97.7    94.2 /  98.6
jpeg50       94.2 /  98.2    100.0 / 100.0
jpeg20       80.8 /  97.7    100.0 /  99.5
down4        84.2 /  97.7    100.0 / 100.0
===========  ==============  ==============

Most misses under degradation are counting prompts: a soft object's confidence falls below
GenEval's counting threshold (0.9), and a corrupted count then also goes unnoticed.
"""

from __future__ import annotations

import argparse
import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from vqrae.data.shapes.corrupt import applicable_corruptions, corrupt_scene
from vqrae.data.shapes.geneval_prompts import GENEVAL_TAGS, sample_geneval_prompt
from vqrae.data.shapes.render import render_scene
from vqrae.eval.geneval import Detector, score_image

__all__ = ["DEGRADATIONS", "ProbeResult", "degrade", "format_probe", "probe_geneval"]


def _blur(radius: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.filter(ImageFilter.GaussianBlur(radius))


def _noise(sigma: float) -> Callable[[Image.Image], Image.Image]:
    def apply(im: Image.Image) -> Image.Image:
        rng = np.random.default_rng(zlib.crc32(im.tobytes()))  # same image, same noise
        arr = np.asarray(im, np.float64) + rng.normal(0, sigma, size=(im.height, im.width, 3))
        return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))

    return apply


def _jpeg(quality: int) -> Callable[[Image.Image], Image.Image]:
    def apply(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        return Image.open(buf).convert("RGB")

    return apply


def _down_up(factor: int) -> Callable[[Image.Image], Image.Image]:
    def apply(im: Image.Image) -> Image.Image:
        small = im.resize((im.width // factor, im.height // factor), Image.Resampling.BICUBIC)
        return small.resize(im.size, Image.Resampling.BICUBIC)

    return apply


#: Named degradations: ``clean`` and stand-ins for reconstruction and generation artefacts.
DEGRADATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "clean": lambda im: im,
    "blur1": _blur(1.0),
    "blur2": _blur(2.0),
    "noise10": _noise(10.0),
    "noise20": _noise(20.0),
    "jpeg50": _jpeg(50),
    "jpeg20": _jpeg(20),
    "down4": _down_up(4),
}


def degrade(image: Image.Image, name: str) -> Image.Image:
    """Apply a named degradation."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; expected one of {list(DEGRADATIONS)}")
    return DEGRADATIONS[name](image)


@dataclass(frozen=True)
class ProbeResult:
    """Verdict rates at one image size under one degradation."""

    size: int
    degradation: str
    correct_accepted: int
    correct_total: int
    corrupt_rejected: int
    corrupt_total: int
    by_kind: dict[str, tuple[int, int]]

    @property
    def accept_rate(self) -> float:
        """Share of correct images the scorer accepts."""
        return self.correct_accepted / self.correct_total if self.correct_total else 0.0

    @property
    def reject_rate(self) -> float:
        """Share of corrupted images the scorer rejects."""
        return self.corrupt_rejected / self.corrupt_total if self.corrupt_total else 0.0


def probe_geneval(
    n: int = 120,
    size: int = 256,
    seed: int = 0,
    degradations: Sequence[str] = ("clean",),
    detector: Detector | None = None,
) -> list[ProbeResult]:
    """Score correct and corrupted renders of ``n`` prompts under each degradation."""
    if detector is None:
        from vqrae.eval.shapes_detector import ShapesDetector

        detector = ShapesDetector()
    cases: list[tuple[dict, str, Image.Image]] = []  # (record, "correct" | corruption, image)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        record, scene = sample_geneval_prompt(rng, GENEVAL_TAGS[i % len(GENEVAL_TAGS)])
        cases.append((record, "correct", render_scene(scene, size)))
        for kind in applicable_corruptions(record):
            cases.append((record, kind, render_scene(corrupt_scene(rng, record, kind), size)))
    results = []
    for name in degradations:
        by_kind: dict[str, list[int]] = {}
        for record, kind, image in cases:
            verdict = score_image(degrade(image, name), record, detector).correct
            right = verdict if kind == "correct" else not verdict
            tally = by_kind.setdefault(kind, [0, 0])
            tally[0] += int(right)
            tally[1] += 1
        corrupt = [v for k, v in by_kind.items() if k != "correct"]
        results.append(
            ProbeResult(
                size=size,
                degradation=name,
                correct_accepted=by_kind["correct"][0],
                correct_total=by_kind["correct"][1],
                corrupt_rejected=sum(v[0] for v in corrupt),
                corrupt_total=sum(v[1] for v in corrupt),
                by_kind={k: (v[0], v[1]) for k, v in by_kind.items()},
            )
        )
    return results


def format_probe(results: Sequence[ProbeResult]) -> str:
    """A table: size, degradation, correct accepted, corrupted rejected, worst corruption."""
    header = f"{'size':>5}  {'degradation':<12}{'correct accepted':>20}{'corrupt rejected':>20}  worst corruption"
    lines = [header, "-" * len(header)]
    for r in results:
        corrupt = {k: v for k, v in r.by_kind.items() if k != "correct"}
        worst = min(corrupt, key=lambda k: corrupt[k][0] / corrupt[k][1]) if corrupt else ""
        w = corrupt.get(worst, (0, 0))
        lines.append(
            f"{r.size:>5}  {r.degradation:<12}"
            f"{f'{100 * r.accept_rate:.1f}% ({r.correct_accepted}/{r.correct_total})':>20}"
            f"{f'{100 * r.reject_rate:.1f}% ({r.corrupt_rejected}/{r.corrupt_total})':>20}"
            f"  {worst} {w[0]}/{w[1]}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: print the probe table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=120, help="prompts (the six tags in turn)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="image sides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--degradations", nargs="+", default=list(DEGRADATIONS), choices=list(DEGRADATIONS)
    )
    args = parser.parse_args(argv)
    results = []
    for size in args.sizes:
        results += probe_geneval(args.n, size, args.seed, args.degradations)
    print(format_probe(results))


if __name__ == "__main__":
    main()
