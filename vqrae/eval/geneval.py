"""GenEval scoring (Ghosh et al., 2023) with a pluggable detector, faithful to the official rules.

Input layout (what GenEval's generation script writes, and what ``evaluate_images.py`` reads)::

    <image_dir>/<5-digit index>/metadata.jsonl   one JSON object: tag, include, exclude?, prompt
    <image_dir>/<5-digit index>/samples/NNNN.png (4 per prompt in the reference runs)

Rules, as ``evaluate_images.py`` applies them:

* detections of each class are sorted by confidence and kept above a threshold (0.3; 0.9 for the
  ``counting`` tag), at most 16 per class, without NMS (``max_overlap`` 1.0);
* an include ``{class, count}`` needs at least ``count`` detections; only the top ``count`` by
  confidence are checked further;
* ``color`` needs that many of those to have that colour (GenEval classifies each crop with
  CLIP; here the detector names the colour);
* ``position: [rel, i]`` needs each of them to be ``rel`` of every object matched by include
  ``i`` (relations: :func:`vqrae.data.shapes.relations.relative_position`); a failed include
  ``i`` fails the position check ("no target");
* an exclude ``{class, count}`` fails the image when ``count`` or more detections were kept.

Output: one JSON line per image with GenEval's keys (``filename, tag, prompt, correct, reason,
metadata, details``; ``metadata`` and ``details`` are JSON strings, details maps each class to
its kept boxes ``[x0, y0, x1, y1, confidence]``) plus ``colors`` (the detector's colour for each
kept box, a JSON string) so a failure can be read. GenEval's ``summary_scores.py`` reads this file
unchanged; :func:`format_report` prints what it prints (per tag in order of first appearance,
Overall = unweighted mean of the tags' image accuracies).

Two deliberate differences, neither changing a verdict: the relations in a position ``reason``
are listed in GenEval's relation order (GenEval joins a Python ``set``, whose order varies
between runs), and folders and samples are read in numeric order (GenEval uses ``os.listdir``).

GenEval's own evaluator (Mask2Former + CLIP ViT-L/14, CUDA and mmdet 2.x) runs on the same
folder where it is installed::

    python evaluation/evaluate_images.py <image_dir> --outfile results.jsonl --model-path <ckpts>
    python evaluation/summary_scores.py results.jsonl

Its classes are COCO's, so it scores real-object prompts; the shapes world's classes need this
module's detector (:mod:`vqrae.eval.shapes_detector`) or any other :class:`Detector`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageOps

from vqrae.data.shapes.colour import COLOUR_NAMES
from vqrae.data.shapes.geneval_prompts import GENEVAL_TAGS
from vqrae.data.shapes.relations import RELATIONS, relative_position
from vqrae.utils.files import atomic_write

__all__ = [
    "COLORS",
    "TAGS",
    "Detection",
    "Detector",
    "GenEvalConfig",
    "GenEvalPrompt",
    "GenEvalReport",
    "ImageResult",
    "TagScore",
    "compute_iou",
    "eval_geneval",
    "evaluate_metadata",
    "format_report",
    "group_detections",
    "load_geneval_dir",
    "load_results",
    "score_geneval",
    "score_image",
    "summarize",
    "validate_metadata",
    "write_results",
]

#: GenEval's colour names, in GenEval's order (the order of the counts in a colour ``reason``).
COLORS: tuple[str, ...] = COLOUR_NAMES
#: GenEval's six tags, in the order of its prompt file.
TAGS: tuple[str, ...] = GENEVAL_TAGS
_SAMPLE_NAME = re.compile(r"\d+\.png")


@dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes:
        label: Class name, as the metadata spells it.
        box: ``(x0, y0, x1, y1)`` in pixels.
        confidence: Score in [0, 1] (GenEval's thresholds apply to it).
        colour: One of :data:`COLORS`, or ``None`` when the detector names no colour.
    """

    label: str
    box: tuple[float, float, float, float]
    confidence: float
    colour: str | None = None


@runtime_checkable
class Detector(Protocol):
    """Anything that finds objects in an RGB image."""

    def detect(self, image: Image.Image) -> Sequence[Detection]:
        """All detections in ``image`` (any order; the scorer sorts and thresholds)."""
        ...


@dataclass(frozen=True)
class GenEvalConfig:
    """GenEval's ``--options`` that matter for scoring, with its defaults."""

    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0
    position_threshold: float = 0.1

    def __post_init__(self) -> None:
        for name in ("threshold", "counting_threshold", "max_overlap"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.max_objects < 1:
            raise ValueError(f"max_objects: must be >= 1, got {self.max_objects}")


@dataclass(frozen=True)
class GenEvalPrompt:
    """One prompt folder: its index (folder name), metadata and sample images (numeric order)."""

    index: str
    metadata: dict[str, Any]
    images: tuple[Path, ...]


@dataclass(frozen=True)
class ImageResult:
    """One line of GenEval's results file (``metadata`` and ``details`` are JSON strings)."""

    filename: str
    tag: str
    prompt: str
    correct: bool
    reason: str
    metadata: str
    details: str
    colors: str = "{}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the results line."""
        return {
            "filename": self.filename,
            "tag": self.tag,
            "prompt": self.prompt,
            "correct": self.correct,
            "reason": self.reason,
            "metadata": self.metadata,
            "details": self.details,
            "colors": self.colors,
        }


@dataclass(frozen=True)
class TagScore:
    """Images correct out of images scored for one tag."""

    tag: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        """Fraction of this tag's images judged correct."""
        return self.correct / self.total if self.total else 0.0


@dataclass(frozen=True)
class GenEvalReport:
    """What ``summary_scores.py`` prints, as numbers (fractions, not percent)."""

    num_images: int
    num_prompts: int
    image_accuracy: float
    prompt_accuracy: float
    tags: dict[str, TagScore] = field(default_factory=dict)

    @property
    def overall(self) -> float:
        """GenEval's score: the unweighted mean over tags of each tag's image accuracy."""
        return float(np.mean([t.accuracy for t in self.tags.values()])) if self.tags else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "num_images": self.num_images,
            "num_prompts": self.num_prompts,
            "image_accuracy": self.image_accuracy,
            "prompt_accuracy": self.prompt_accuracy,
            "overall": self.overall,
            "tags": {
                t.tag: {"correct": t.correct, "total": t.total, "accuracy": t.accuracy}
                for t in self.tags.values()
            },
        }


# ----------------------------------------------------------------------------- reading
def validate_metadata(metadata: Any, where: str) -> dict[str, Any]:
    """Check one metadata object against GenEval's schema; returns it unchanged.

    Raises:
        ValueError: Naming ``where`` for a missing or unknown tag, a missing prompt, include or
            exclude entries without ``class`` / positive integer ``count``, unknown colours, or a
            ``position`` that is not ``[relation, index of an earlier include]``.
    """
    if not isinstance(metadata, dict):
        raise ValueError(f"{where}: metadata must be a JSON object")
    if metadata.get("tag") not in TAGS:
        raise ValueError(f"{where}: tag {metadata.get('tag')!r} is not one of {list(TAGS)}")
    if not isinstance(metadata.get("prompt"), str):
        raise ValueError(f"{where}: missing string field 'prompt'")
    for key in ("include", "exclude"):
        entries = metadata.get(key, [])
        if not isinstance(entries, list) or (key == "include" and not entries):
            raise ValueError(
                f"{where}: {key!r} must be a {'non-empty ' if key == 'include' else ''}list"
            )
        for i, req in enumerate(entries):
            at = f"{where}: {key}[{i}]"
            if not isinstance(req, dict) or not isinstance(req.get("class"), str):
                raise ValueError(f"{at}: needs a string 'class'")
            count = req.get("count")
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"{at}: 'count' must be a positive integer, got {count!r}")
            if "color" in req and req["color"] not in COLORS:
                raise ValueError(f"{at}: colour {req['color']!r} is not one of {list(COLORS)}")
            if "position" in req:
                pos = req["position"]
                ok = (
                    isinstance(pos, list | tuple)
                    and len(pos) == 2
                    and pos[0] in RELATIONS
                    and isinstance(pos[1], int)
                    and 0 <= pos[1] < i
                )
                if key != "include" or not ok:
                    raise ValueError(
                        f"{at}: 'position' must be [relation, index of an earlier include], got {pos!r}"
                    )
    return metadata


def load_geneval_dir(image_dir: str | os.PathLike[str]) -> list[GenEvalPrompt]:
    """Read GenEval's layout: numeric folders with ``metadata.jsonl`` and ``samples/*.png``.

    Folders whose name is not all digits are ignored, as GenEval does; so are sample files not
    named ``<digits>.png``.

    Raises:
        ValueError: The folder is missing or holds no prompt folders; a prompt folder lacks its
            metadata or holds invalid metadata (see :func:`validate_metadata`).
    """
    root = Path(image_dir)
    if not root.is_dir():
        raise ValueError(f"GenEval image folder {root} does not exist")
    prompts = []
    for sub in sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    ):
        meta_path = sub / "metadata.jsonl"
        if not meta_path.is_file():
            raise ValueError(f"{sub}: no metadata.jsonl")
        try:
            with open(meta_path, encoding="utf-8") as fh:
                metadata = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path}: not one JSON object ({err.msg})") from err
        validate_metadata(metadata, str(meta_path))
        samples = sub / "samples"
        names = sorted(
            (p for p in samples.iterdir() if p.is_file() and _SAMPLE_NAME.match(p.name))
            if samples.is_dir()
            else (),
            key=lambda p: (int(p.name.split(".")[0]), p.name),
        )
        prompts.append(GenEvalPrompt(sub.name, metadata, tuple(names)))
    if not prompts:
        raise ValueError(f"{root} holds no <index>/metadata.jsonl prompt folders")
    return prompts


# ----------------------------------------------------------------------------- the rules
def compute_iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """GenEval's IoU (areas with its ``+ 1`` pixel convention)."""

    def area(b: Sequence[float]) -> float:
        return max(b[2] - b[0] + 1, 0) * max(b[3] - b[1] + 1, 0)

    inter = area(
        [
            max(box_a[0], box_b[0]),
            max(box_a[1], box_b[1]),
            min(box_a[2], box_b[2]),
            min(box_a[3], box_b[3]),
        ]
    )
    union = area(box_a) + area(box_b) - inter
    return inter / union if union else 0.0


def group_detections(
    detections: Sequence[Detection], tag: str, config: GenEvalConfig | None = None
) -> dict[str, list[Detection]]:
    """Keep detections as GenEval does: per class, by confidence, above the tag's threshold.

    Returns:
        ``{class: detections}``, each list sorted by confidence (highest first), classes with no
        kept detection absent.
    """
    config = config or GenEvalConfig()
    threshold = config.counting_threshold if tag == "counting" else config.threshold
    by_class: dict[str, list[Detection]] = {}
    for det in detections:
        by_class.setdefault(det.label, []).append(det)
    kept: dict[str, list[Detection]] = {}
    for label, dets in by_class.items():
        ordered = sorted(dets, key=lambda d: -d.confidence)  # stable for ties
        ordered = [d for d in ordered if d.confidence > threshold][: config.max_objects]
        chosen: list[Detection] = []
        while ordered:
            best = ordered.pop(0)
            chosen.append(best)
            if config.max_overlap < 1:
                ordered = [d for d in ordered if compute_iou(best.box, d.box) < config.max_overlap]
        if chosen:
            kept[label] = chosen
    return kept


def evaluate_metadata(
    objects: Mapping[str, Sequence[Detection]],
    metadata: Mapping[str, Any],
    config: GenEvalConfig | None = None,
) -> tuple[bool, str]:
    """GenEval's ``evaluate``: judge kept detections against one prompt's metadata.

    Returns:
        ``(correct, reason)`` with GenEval's reason lines joined by newlines (empty if correct).
    """
    config = config or GenEvalConfig()
    correct = True
    reason: list[str] = []
    matched_groups: list[Sequence[Detection] | None] = []
    for req in metadata.get("include", []):
        classname, count = req["class"], req["count"]
        matched = True
        found = list(objects.get(classname, []))[:count]
        if len(found) < count:
            correct = matched = False
            reason.append(f"expected {classname}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = [d.colour for d in found]
                if colors.count(req["color"]) < count:
                    correct = matched = False
                    reason.append(
                        f"expected {req['color']} {classname}>={count}, found "
                        f"{colors.count(req['color'])} {req['color']}; and "
                        + ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    )
            if "position" in req and matched:
                expected_rel, target_group = req["position"]
                targets = matched_groups[target_group]
                if targets is None:
                    correct = matched = False
                    reason.append(f"no target for {classname} to be {expected_rel}")
                else:
                    for obj in found:
                        for target in targets:
                            true_rels = relative_position(
                                obj.box, target.box, config.position_threshold
                            )
                            if expected_rel not in true_rels:
                                correct = matched = False
                                found_rels = " and ".join(r for r in RELATIONS if r in true_rels)
                                reason.append(
                                    f"expected {classname} {expected_rel} target, found {found_rels} target"
                                )
                                break
                        if not matched:
                            break
        matched_groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        classname = req["class"]
        if len(objects.get(classname, [])) >= req["count"]:
            correct = False
            reason.append(f"expected {classname}<{req['count']}, found {len(objects[classname])}")
    return correct, "\n".join(reason)


def _read_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def score_image(
    image: Image.Image,
    metadata: Mapping[str, Any],
    detector: Detector,
    filename: str = "",
    config: GenEvalConfig | None = None,
) -> ImageResult:
    """Detect, keep and judge one image; returns its results line."""
    config = config or GenEvalConfig()
    kept = group_detections(detector.detect(image), metadata["tag"], config)
    correct, reason = evaluate_metadata(kept, metadata, config)
    details = {k: [[*map(float, d.box), float(d.confidence)] for d in v] for k, v in kept.items()}
    colors = {k: [d.colour for d in v] for k, v in kept.items()}
    return ImageResult(
        filename=filename,
        tag=metadata["tag"],
        prompt=metadata["prompt"],
        correct=bool(correct),
        reason=reason,
        metadata=json.dumps(dict(metadata)),
        details=json.dumps(details),
        colors=json.dumps(colors),
    )


def score_geneval(
    prompts: Sequence[GenEvalPrompt], detector: Detector, config: GenEvalConfig | None = None
) -> list[ImageResult]:
    """Score every sample of every prompt folder (prompt order, then sample order)."""
    results = []
    for prompt in prompts:
        for path in prompt.images:
            results.append(
                score_image(_read_rgb(path), prompt.metadata, detector, str(path), config)
            )
    return results


# ----------------------------------------------------------------------------- results files
def write_results(results: Sequence[ImageResult], path: str | os.PathLike[str]) -> Path:
    """Write the results as JSON lines (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r.to_dict()) + "\n" for r in results)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def load_results(path: str | os.PathLike[str]) -> list[ImageResult]:
    """Read a results file (this module's, or GenEval's own ``results.jsonl``).

    Raises:
        ValueError: Naming the line for invalid JSON or missing ``tag`` / ``correct`` /
            ``metadata`` fields.
    """
    results = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON ({err.msg})") from err
            missing = [k for k in ("tag", "correct", "metadata") if k not in obj]
            if missing:
                raise ValueError(f"{where}: missing fields {missing}")
            results.append(
                ImageResult(
                    filename=str(obj.get("filename", "")),
                    tag=str(obj["tag"]),
                    prompt=str(obj.get("prompt", "")),
                    correct=bool(obj["correct"]),
                    reason=str(obj.get("reason", "")),
                    metadata=str(obj["metadata"]),
                    details=str(obj.get("details", "{}")),
                    colors=str(obj.get("colors", "{}")),
                )
            )
    return results


def summarize(results: Sequence[ImageResult]) -> GenEvalReport:
    """The numbers of ``summary_scores.py``: prompts are distinct ``metadata`` strings."""
    if not results:
        return GenEvalReport(0, 0, 0.0, 0.0, {})
    by_prompt: dict[str, bool] = {}
    correct: dict[str, int] = {}
    total: dict[str, int] = {}
    for r in results:
        by_prompt[r.metadata] = by_prompt.get(r.metadata, False) or r.correct
        total[r.tag] = total.get(r.tag, 0) + 1  # insertion order = order of first appearance
        correct[r.tag] = correct.get(r.tag, 0) + int(r.correct)
    tags = {t: TagScore(t, correct[t], total[t]) for t in total}
    return GenEvalReport(
        num_images=len(results),
        num_prompts=len(by_prompt),
        image_accuracy=sum(r.correct for r in results) / len(results),
        prompt_accuracy=sum(by_prompt.values()) / len(by_prompt),
        tags=tags,
    )


def format_report(report: GenEvalReport) -> str:
    """The summary exactly as GenEval's ``summary_scores.py`` prints it."""
    lines = [
        "Summary",
        "=======",
        f"Total images: {report.num_images}",
        f"Total prompts: {report.num_prompts}",
        f"% correct images: {report.image_accuracy:.2%}",
        f"% correct prompts: {report.prompt_accuracy:.2%}",
        "",
        "Task breakdown",
        "==============",
    ]
    for t in report.tags.values():
        lines.append(f"{t.tag:<16} = {t.accuracy:.2%} ({t.correct} / {t.total})")
    lines += ["", f"Overall score (avg. over tasks): {report.overall:.5f}"]
    return "\n".join(lines)


def eval_geneval(
    image_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    detector: Detector | None = None,
    config: GenEvalConfig | None = None,
) -> GenEvalReport:
    """Score a GenEval folder: load, detect, judge, write ``out`` (results JSON lines), summarise.

    Args:
        image_dir: GenEval's layout (see the module docstring).
        out: Results file to write (GenEval's ``--outfile``); nothing is written when ``None``.
        detector: Any :class:`Detector`; the shapes world's detector by default.
        config: GenEval's thresholds.
    """
    if detector is None:
        from vqrae.eval.shapes_detector import ShapesDetector

        detector = ShapesDetector()
    results = score_geneval(load_geneval_dir(image_dir), detector, config)
    if out is not None:
        write_results(results, out)
    return summarize(results)
