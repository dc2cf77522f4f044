"""DPG-Bench scoring (Hu et al., 2024, ELLA) with a pluggable yes/no judge.

Layout: one image per prompt, ``<images>/<item_id>.png``, holding a 2x2 grid of four samples
(top-left, top-right, bottom-left, bottom-right; tile side = half the image width unless given);
the CSV has DPG's columns ``item_id, text, keywords, proposition_id, dependency,
category_broad, category_detailed, tuple, question_natural_language``.

Method: for each tile, the judge answers every question of the item; a question scores 1 when
the answer is "yes"; then every question with a parent (``dependency``, comma-separated ids,
``0`` for none) that scored 0 scores 0 (parents first, so zeros pass down a chain); the tile's
score is the mean over its questions; the image's score is the mean over its tiles; DPG-Bench =
100 x the mean over images. Category scores are means of the per-question, per-tile scores,
grouped by the tuple's prefix (``"entity - whole"``, L2) and its first word (``"entity"``, L1),
as ELLA groups them.

Where this differs from ELLA's ``compute_dpg_bench.py`` (checked against its source):

* ELLA's ``prepare_dpg_data`` skips the first data row of the CSV (``if i == 0: continue``), so
  the first item loses proposition 1; a later proposition depending on it then raises a
  ``KeyError``, which ELLA catches, silently dropping that image. Every row is read here.
* ELLA takes category scores from the scores *before* dependency zeroing, and only from the
  *last* tile (``qid2scores_orig`` is overwritten per tile). Here they come after zeroing, from
  every tile, so they agree with the overall score.
* ELLA counts ``answer == 'yes'`` exactly (mPLUG answers in lower case). Here the answer is
  stripped, lower-cased and stripped of a final full stop first, so other judges' "Yes." counts.
* ELLA skips images that fail to load or score, without reporting them, and scores the files it
  finds (``os.listdir``). Here the items of the CSV are scored; items without an image are listed
  in ``DPGReport.missing`` and excluded from the mean, and images without an item are ignored.
* ELLA's ``--pic-num`` defaults to 1 (its launch script sets 4); the default here is 4.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from vqrae.data.shapes.dpg_items import DPG_COLUMNS, proposition_holds
from vqrae.data.shapes.scene import Ground, Scene, ShapeObject
from vqrae.utils.files import atomic_write

__all__ = [
    "DPGItem",
    "DPGReport",
    "JUDGES",
    "DetectorJudge",
    "ItemScore",
    "Judge",
    "MPLUGJudge",
    "OracleJudge",
    "Proposition",
    "eval_dpg",
    "format_report",
    "is_yes",
    "load_dpg_csv",
    "make_judge",
    "score_dpg",
    "score_item",
    "split_tiles",
    "zero_dependents",
]


@dataclass(frozen=True)
class Proposition:
    """One question of an item."""

    pid: int
    parents: tuple[int, ...]
    category_broad: str
    category_detailed: str
    tuple: str
    question: str

    @property
    def l2(self) -> str:
        """ELLA's L2 category: the tuple's text before ``(``."""
        return self.tuple.split("(")[0].strip()

    @property
    def l1(self) -> str:
        """ELLA's L1 category: the L2 category's text before ``-``."""
        return self.l2.split("-")[0].strip()


@dataclass(frozen=True)
class DPGItem:
    """One prompt and its propositions (CSV order)."""

    item_id: str
    text: str
    propositions: tuple[Proposition, ...]


@runtime_checkable
class Judge(Protocol):
    """A visual question answerer: any reply; "yes" (see :func:`is_yes`) scores 1."""

    def answer(self, image: Image.Image, question: str) -> str:
        """The reply to ``question`` about ``image``."""
        ...


@dataclass(frozen=True)
class ItemScore:
    """One image: per-tile scores and per-question scores (after zeroing; tiles x questions)."""

    item_id: str
    tile_scores: tuple[float, ...]
    question_scores: tuple[tuple[float, ...], ...]

    @property
    def score(self) -> float:
        """Mean over tiles of the tile scores."""
        return float(np.mean(self.tile_scores))


@dataclass(frozen=True)
class DPGReport:
    """DPG-Bench result (scores in percent)."""

    score: float
    num_images: int
    l1: dict[str, float] = field(default_factory=dict)
    l2: dict[str, float] = field(default_factory=dict)
    items: tuple[ItemScore, ...] = ()
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (per-item scores included)."""
        return {
            "score": self.score,
            "num_images": self.num_images,
            "l1": self.l1,
            "l2": self.l2,
            "missing": list(self.missing),
            "items": {
                s.item_id: {"score": 100 * s.score, "tiles": list(s.tile_scores)}
                for s in self.items
            },
        }


def is_yes(reply: str) -> bool:
    """A reply counts as yes when, stripped, lower-cased and without a final ``.``, it is ``yes``."""
    return reply.strip().lower().rstrip(".") == "yes"


def load_dpg_csv(path: str | os.PathLike[str]) -> dict[str, DPGItem]:
    """Read DPG's CSV (every row; items in order of first appearance).

    Raises:
        ValueError: Missing columns, non-integer ids or dependencies, duplicate proposition ids,
            or a dependency on a proposition the item does not have.
    """
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in DPG_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        rows: dict[str, list[Proposition]] = {}
        texts: dict[str, str] = {}
        for lineno, row in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            try:
                pid = int(row["proposition_id"])
                parents = tuple(int(d.strip()) for d in row["dependency"].split(",") if d.strip())
            except ValueError as err:
                raise ValueError(
                    f"{where}: proposition_id and dependency must be integers ({err})"
                ) from err
            item = row["item_id"]
            texts.setdefault(item, row["text"])
            props = rows.setdefault(item, [])
            if any(p.pid == pid for p in props):
                raise ValueError(f"{where}: duplicate proposition {pid} in item {item!r}")
            props.append(
                Proposition(
                    pid=pid,
                    parents=tuple(p for p in parents if p != 0),
                    category_broad=row["category_broad"],
                    category_detailed=row["category_detailed"],
                    tuple=row["tuple"],
                    question=row["question_natural_language"],
                )
            )
    for item, props in rows.items():
        ids = {p.pid for p in props}
        for p in props:
            unknown = [d for d in p.parents if d not in ids]
            if unknown:
                raise ValueError(
                    f"{path}: item {item!r} proposition {p.pid} depends on unknown {unknown}"
                )
    return {item: DPGItem(item, texts[item], tuple(props)) for item, props in rows.items()}


def split_tiles(
    image: Image.Image, tiles: int = 4, tile_size: int | None = None
) -> list[Image.Image]:
    """The first ``tiles`` tiles of a 2x2 grid (row by row), each ``tile_size`` square."""
    if not 1 <= tiles <= 4:
        raise ValueError(f"tiles: must be 1..4, got {tiles}")
    side = tile_size or image.width // 2
    boxes = [(0, 0), (side, 0), (0, side), (side, side)][:tiles]
    return [image.crop((x, y, x + side, y + side)) for x, y in boxes]


def zero_dependents(props: Sequence[Proposition], scores: Mapping[int, float]) -> dict[int, float]:
    """Scores after zeroing every proposition with a parent that scored 0 (transitively)."""
    by_id = {p.pid: p for p in props}
    final: dict[int, float] = {}

    def resolve(pid: int, stack: tuple[int, ...] = ()) -> float:
        if pid in final:
            return final[pid]
        if pid in stack:
            raise ValueError(f"dependency cycle through proposition {pid}")
        value = scores[pid]
        if any(resolve(parent, (*stack, pid)) == 0 for parent in by_id[pid].parents):
            value = 0.0
        final[pid] = value
        return value

    for p in props:
        resolve(p.pid)
    return final


def score_item(
    item: DPGItem, image: Image.Image, judge: Judge, tiles: int = 4, tile_size: int | None = None
) -> ItemScore:
    """Score one grid image: judge every question on every tile, zero dependents, average."""
    tile_scores, question_scores = [], []
    for tile in split_tiles(image, tiles, tile_size):
        raw = {p.pid: float(is_yes(judge.answer(tile, p.question))) for p in item.propositions}
        final = zero_dependents(item.propositions, raw)
        row = tuple(final[p.pid] for p in item.propositions)
        question_scores.append(row)
        tile_scores.append(float(np.mean(row)))
    return ItemScore(item.item_id, tuple(tile_scores), tuple(question_scores))


def score_dpg(
    items: Mapping[str, DPGItem],
    image_dir: str | os.PathLike[str],
    judge: Judge,
    tiles: int = 4,
    tile_size: int | None = None,
) -> DPGReport:
    """Score every item whose ``<item_id>.png`` exists in ``image_dir``."""
    root = Path(image_dir)
    scored, missing = [], []
    l1: dict[str, list[float]] = defaultdict(list)
    l2: dict[str, list[float]] = defaultdict(list)
    for item_id, item in items.items():
        path = root / f"{item_id}.png"
        if not path.is_file():
            missing.append(item_id)
            continue
        with Image.open(path) as im:
            result = score_item(item, im.convert("RGB"), judge, tiles, tile_size)
        scored.append(result)
        for row in result.question_scores:
            for p, s in zip(item.propositions, row, strict=True):
                l1[p.l1].append(s)
                l2[p.l2].append(s)
    score = 100.0 * float(np.mean([s.score for s in scored])) if scored else 0.0
    return DPGReport(
        score=score,
        num_images=len(scored),
        l1={k: 100.0 * float(np.mean(v)) for k, v in l1.items()},
        l2={k: 100.0 * float(np.mean(v)) for k, v in sorted(l2.items())},
        items=tuple(scored),
        missing=tuple(missing),
    )


def format_report(report: DPGReport) -> str:
    """ELLA's summary layout: L1 and L2 category scores, then the DPG-Bench score."""
    lines = ["L1 category scores:"]
    lines += [f"\t{k}: {v:.2f}" for k, v in report.l1.items()]
    lines.append("L2 category scores:")
    lines += [f"\t{k}: {v:.2f}" for k, v in report.l2.items()]
    lines.append(f"Images scored: {report.num_images}")
    if report.missing:
        lines.append(f"Items without an image: {len(report.missing)} (first: {report.missing[0]})")
    lines.append(f"DPG-Bench score: {report.score:.2f}")
    return "\n".join(lines)


def eval_dpg(
    images: str | os.PathLike[str],
    csv_path: str | os.PathLike[str],
    judge: Judge,
    out: str | os.PathLike[str] | None = None,
    tiles: int = 4,
    tile_size: int | None = None,
) -> DPGReport:
    """Load the CSV, score the image folder with ``judge``, write ``out`` (JSON) when given."""
    report = score_dpg(load_dpg_csv(csv_path), images, judge, tiles, tile_size)
    if out is not None:
        payload = json.dumps({"benchmark": "DPG-Bench", **report.to_dict()}, indent=2) + "\n"
        out_path = Path(out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out_path, lambda tmp: tmp.write_text(payload, encoding="utf-8"))
    return report


# ----------------------------------------------------------------------------- judges
def _image_key(image: Image.Image) -> str:
    rgb = image.convert("RGB")
    return hashlib.sha1(rgb.tobytes() + repr(rgb.size).encode()).hexdigest()


def _question_tuples(items: Iterable[DPGItem]) -> dict[str, str]:
    table: dict[str, str] = {}
    for item in items:
        for p in item.propositions:
            if table.setdefault(p.question, p.tuple) != p.tuple:
                raise ValueError(
                    f"question {p.question!r} stands for two tuples: {table[p.question]!r}, {p.tuple!r}"
                )
    return table


class OracleJudge:
    """Answers from scene truth: each tile is recognised by its pixels, each question by its tuple.

    Built for tests and for reference sets of the shapes world, whose tiles are renders of
    known scenes.
    """

    def __init__(
        self, tiles: Iterable[tuple[Image.Image, Scene]], items: Iterable[DPGItem]
    ) -> None:
        self._scenes = {_image_key(image): scene for image, scene in tiles}
        self._tuples = _question_tuples(items)

    @classmethod
    def from_shapes_dir(
        cls, dpg_dir: str | os.PathLike[str], tile_size: int | None = None
    ) -> OracleJudge:
        """From a shapes data set's ``dpg/`` folder (``scenes.jsonl``, ``images/``, the CSV)."""
        root = Path(dpg_dir)
        pairs = []
        with open(root / "scenes.jsonl", encoding="utf-8") as fh:
            grids: dict[str, list[Image.Image]] = {}
            for line in fh:
                rec = json.loads(line)
                if rec["item_id"] not in grids:
                    with Image.open(root / "images" / f"{rec['item_id']}.png") as im:
                        grids[rec["item_id"]] = split_tiles(im.convert("RGB"), 4, tile_size)
                pairs.append((grids[rec["item_id"]][rec["tile"]], Scene.from_dict(rec["scene"])))
        return cls(pairs, load_dpg_csv(root / "dpg_bench.csv").values())

    def answer(self, image: Image.Image, question: str) -> str:
        """``"yes"`` or ``"no"`` from the truth of the question's tuple on the tile's scene."""
        scene = self._scenes.get(_image_key(image))
        if scene is None:
            raise KeyError("OracleJudge: image is not one of its known tiles")
        if question not in self._tuples:
            raise KeyError(f"OracleJudge: unknown question {question!r}")
        return "yes" if proposition_holds(scene, self._tuples[question]) else "no"


class DetectorJudge:
    """Answers from detections (any GenEval :class:`~vqrae.eval.geneval.Detector`) of the tile.

    The detections above ``threshold`` become a scene (class, colour, box), and the question's
    tuple is decided on it as :class:`OracleJudge` decides it on the truth; this judges
    generated images of the shapes world without a language model.
    """

    def __init__(
        self, items: Iterable[DPGItem], detector: Any | None = None, threshold: float = 0.3
    ) -> None:
        if detector is None:
            from vqrae.eval.shapes_detector import ShapesDetector

            detector = ShapesDetector()
        self.detector = detector
        self.threshold = threshold
        self._tuples = _question_tuples(items)

    def answer(self, image: Image.Image, question: str) -> str:
        """``"yes"`` or ``"no"``."""
        if question not in self._tuples:
            raise KeyError(f"DetectorJudge: unknown question {question!r}")
        side = float(max(image.size))
        objects = []
        for d in self.detector.detect(image):
            if d.confidence <= self.threshold or d.colour is None:
                continue
            x0, y0, x1, y1 = d.box
            objects.append(
                ShapeObject(
                    d.label,
                    d.colour,
                    (x0 + x1) / 2 / side,
                    (y0 + y1) / 2 / side,
                    max(x1 - x0, y1 - y0) / side,
                    (0, 0, 0),
                )
            )
        scene = Scene(tuple(objects), Ground((128, 128, 128), (128, 128, 128), 0.0, 0.0, 0))
        return "yes" if proposition_holds(scene, self._tuples[question]) else "no"


class MPLUGJudge:
    """DPG-Bench's own judge: mPLUG-large VQA through ModelScope (where it is installed).

    ELLA's script builds ``pipeline(Tasks.visual_question_answering,
    model="damo/mplug_visual-question-answering_coco_large_en")`` and reads ``result["text"]``.
    """

    MODEL = "damo/mplug_visual-question-answering_coco_large_en"

    def __init__(self, model: str = MODEL, device: str = "gpu") -> None:
        try:
            from modelscope.pipelines import pipeline
            from modelscope.utils.constant import Tasks
        except ImportError as err:
            raise ImportError(
                "the mplug judge needs ModelScope (pip install modelscope) and its mPLUG weights"
            ) from err
        self._pipeline = pipeline(Tasks.visual_question_answering, model=model, device=device)

    def answer(self, image: Image.Image, question: str) -> str:
        """mPLUG's reply."""
        return str(self._pipeline({"image": image, "question": question})["text"])


#: Judge names :func:`make_judge` knows.
JUDGES: tuple[str, ...] = ("detector", "oracle", "mplug")


def make_judge(
    name: str, items: Mapping[str, DPGItem], dpg_dir: str | os.PathLike[str] | None = None
) -> Judge:
    """A judge by name: ``detector`` (the shapes detector; any image of this world),
    ``oracle`` (scene truth of a shapes data set's ``dpg/`` folder, given as ``dpg_dir``) or
    ``mplug`` (DPG-Bench's mPLUG through ModelScope, where installed)."""
    if name == "detector":
        return DetectorJudge(items.values())
    if name == "oracle":
        if dpg_dir is None:
            raise ValueError("the oracle judge needs dpg_dir (a shapes data set's dpg/ folder)")
        return OracleJudge.from_shapes_dir(dpg_dir)
    if name == "mplug":
        return MPLUGJudge()
    raise ValueError(f"unknown judge {name!r}; expected one of {list(JUDGES)}")
