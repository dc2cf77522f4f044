"""Write a shapes data set: images and every layout derived from the scenes, plus a HF dataset.

``make_shapes_dataset(out, n, seed, size)`` writes::

    out/manifest.json                  what was written, with the arguments and counts
    out/images/<id>.png                n scenes (ids 000000 ...)
    out/scenes.jsonl                   id, image, split, seed, scene (data), captions
    out/llava_captions.json            caption pairs (LLaVA projector pretraining)
    out/llava_vqa.json                 multi-turn VQA conversations (LLaVA format)
    out/vqa/questions.jsonl            the same questions one per line, as LLaVA's model_vqa
                                       reads them, with "answer" and "category" (the kind)
    out/geneval/evaluation_metadata.jsonl, generation_prompts.txt   prompt-only records
    out/geneval/reference/<5-digit>/metadata.jsonl, samples/NNNN.png scenes that satisfy them
    out/mme/...                        MME layout (see vqrae.data.shapes.mme_layout)
    out/gqa/questions.json             GQA questions about images/<id>.png
    out/dpg/dpg_bench.csv, prompts/<item>.txt, images/<item>.png (2x2 grids of 4 samples),
            scenes.jsonl (item_id, tile, scene: the truth of each tile)
    out/hf/                            the scenes as a ``datasets.Dataset`` (save_to_disk)

Every artefact draws from its own seeded stream (:mod:`vqrae.data.shapes.splits`), so the
``validation`` and ``test`` splits of a seed share nothing with ``train``; their captions use
the held-out phrasings unless ``phrasings`` says otherwise, and their VQA questions always use
the held-out question wordings (:mod:`vqrae.data.shapes.question_phrasings`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from vqrae.data.shapes.captions import PHRASINGS, captions
from vqrae.data.shapes.dpg_items import dpg_rows, relayout, rows_to_csv
from vqrae.data.shapes.geneval_prompts import (
    GENEVAL_TAGS,
    sample_geneval_prompt,
    scene_for_record,
    write_geneval_prompt_dir,
)
from vqrae.data.shapes.gqa_questions import gqa_questions
from vqrae.data.shapes.mme_layout import MME_SUBTASKS, MMEItem, mme_pair, write_mme
from vqrae.data.shapes.render import render_scene
from vqrae.data.shapes.sampler import SamplerConfig, sample_scene
from vqrae.data.shapes.splits import SPLITS, default_phrasings, split_rng
from vqrae.data.shapes.vqa import (
    llava_caption_record,
    llava_record,
    question_row,
    scene_questions,
    without_giveaways,
)
from vqrae.utils.files import atomic_write

__all__ = [
    "ShapesDatasetSummary",
    "dpg_grid",
    "format_summary",
    "make_shapes_dataset",
    "to_hf_dataset",
]


@dataclass(frozen=True)
class ShapesDatasetSummary:
    """What :func:`make_shapes_dataset` wrote (paths are relative to ``out``)."""

    out: str
    split: str
    seed: int
    size: int
    phrasings: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the manifest)."""
        return asdict(self) | {"phrasings": list(self.phrasings)}


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=1) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def dpg_grid(tiles: Sequence[Image.Image]) -> Image.Image:
    """Four equal tiles as DPG's 2x2 grid (top-left, top-right, bottom-left, bottom-right)."""
    if len(tiles) != 4 or len({t.size for t in tiles}) != 1:
        raise ValueError("a DPG grid needs four tiles of one size")
    w, h = tiles[0].size
    grid = Image.new("RGB", (2 * w, 2 * h))
    for k, tile in enumerate(tiles):
        grid.paste(tile, ((k % 2) * w, (k // 2) * h))
    return grid


def make_shapes_dataset(
    out: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    size: int = 256,
    split: str = "train",
    phrasings: Sequence[str] | None = None,
    geneval_per_tag: int | None = None,
    geneval_samples: int = 4,
    mme_per_subtask: int | None = None,
    dpg_items: int | None = None,
    hf: bool = True,
    config: SamplerConfig | None = None,
) -> ShapesDatasetSummary:
    """Write ``n`` scenes and every layout derived from scenes into ``out``.

    Args:
        out: Output folder (created; existing files of the same names are replaced).
        n: Number of scenes in ``images/`` (and of VQA conversations, captions, GQA images).
        seed: Base seed; with ``split`` it fixes everything written.
        size: Image side in pixels.
        split: ``train``, ``validation`` or ``test``.
        phrasings: Caption phrasings; by default the split's (:func:`default_phrasings`).
        geneval_per_tag: GenEval prompts per tag (default ``max(1, n // 6)``).
        geneval_samples: Reference samples per GenEval prompt (GenEval's runs use 4).
        mme_per_subtask: MME images per subtask (default ``max(1, n // 4)``).
        dpg_items: DPG items (default ``max(1, n // 4)``).
        hf: Also save the scenes as a Hugging Face dataset in ``out/hf``.
        config: The world's sampling constraints.

    Returns:
        A :class:`ShapesDatasetSummary` (also written as ``manifest.json``).
    """
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if split not in SPLITS:
        raise ValueError(f"split: unknown {split!r}; expected one of {list(SPLITS)}")
    phrasings = tuple(phrasings) if phrasings is not None else default_phrasings(split)
    unknown = [p for p in phrasings if p not in PHRASINGS]
    if unknown or not phrasings:
        raise ValueError(f"phrasings: unknown {unknown} (known: {list(PHRASINGS)})")
    geneval_per_tag = max(1, n // 6) if geneval_per_tag is None else geneval_per_tag
    mme_per_subtask = max(1, n // 4) if mme_per_subtask is None else mme_per_subtask
    dpg_count = max(1, n // 4) if dpg_items is None else dpg_items
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    question_phrasings = "train" if split == "train" else "heldout"

    # Scenes, captions, VQA and GQA share the scene images.
    scene_lines, cap_records, vqa_records, vqa_questions = [], [], [], []
    gqa: dict[str, dict[str, Any]] = {}
    for i in range(n):
        rng = split_rng(seed, split, "scene", i)
        scene = sample_scene(rng, config)
        sid = f"{i:06d}"
        image_rel = f"images/{sid}.png"
        _save_png(render_scene(scene, size), root / image_rel)
        caps = captions(scene, phrasings)
        scene_lines.append(
            json.dumps(
                {
                    "id": sid,
                    "image": image_rel,
                    "split": split,
                    "seed": [seed, SPLITS[split], i],
                    "scene": scene.to_dict(),
                    "captions": caps,
                }
            )
            + "\n"
        )
        qrng = split_rng(seed, split, "vqa", i)
        cap_records.append(
            llava_caption_record(sid, image_rel, caps[int(qrng.integers(len(caps)))])
        )
        qas = scene_questions(qrng, scene, phrasings=question_phrasings)
        vqa_records.append(llava_record(sid, image_rel, without_giveaways(qas)))
        vqa_questions += [question_row(f"{sid}_{j}", image_rel, qa) for j, qa in enumerate(qas)]
        gqa.update(gqa_questions(split_rng(seed, split, "gqa", i), scene, sid, first_qid=len(gqa)))
    _write_text(root / "scenes.jsonl", "".join(scene_lines))
    _write_json(root / "llava_captions.json", cap_records)
    _write_json(root / "llava_vqa.json", vqa_records)
    _write_text(
        root / "vqa" / "questions.jsonl", "".join(json.dumps(r) + "\n" for r in vqa_questions)
    )
    _write_json(root / "gqa" / "questions.json", gqa)

    # GenEval: prompt-only records, and reference samples that satisfy them.
    records = []
    for t, tag in enumerate(GENEVAL_TAGS):
        for j in range(geneval_per_tag):
            rng = split_rng(seed, split, "geneval", t * 100_000 + j)
            record, first = sample_geneval_prompt(rng, tag, config)
            scenes = [first] + [
                scene_for_record(rng, record, config) for _ in range(geneval_samples - 1)
            ]
            write_geneval_prompt_dir(
                root / "geneval" / "reference",
                len(records),
                record,
                [render_scene(s, size) for s in scenes],
            )
            records.append(record)
    _write_text(
        root / "geneval" / "evaluation_metadata.jsonl",
        "".join(json.dumps(r) + "\n" for r in records),
    )
    _write_text(
        root / "geneval" / "generation_prompts.txt", "".join(r["prompt"] + "\n" for r in records)
    )

    # MME: one scene per image, a (true, false) pair of the subtask's kind.
    items, mme_images = [], []
    for t, subtask in enumerate(MME_SUBTASKS):
        j = 0
        while sum(it.subtask == subtask for it in items) < mme_per_subtask:
            rng = split_rng(seed, split, "mme", t * 100_000 + j)
            j += 1
            scene = sample_scene(rng, config)
            pair = mme_pair(rng, scene, subtask)
            if pair is None:
                continue
            items.append(MMEItem(subtask, f"{len(items):06d}.png", scene, pair))
            mme_images.append(render_scene(scene, size))
    write_mme(root / "mme", items, mme_images)

    # DPG: a dense prompt per item, four samples (re-laid-out scenes) in a 2x2 grid.
    rows, tile_lines = [], []
    for k in range(dpg_count):
        rng = split_rng(seed, split, "dpg", k)
        scene = sample_scene(rng, config)
        item_id = f"shapes{k}"
        item_rows = dpg_rows(scene, item_id, phrasings[k % len(phrasings)])
        rows += item_rows
        tiles = [scene] + [relayout(rng, scene, config) for _ in range(3)]
        tile_lines += [
            json.dumps({"item_id": item_id, "tile": t, "scene": s.to_dict()}) + "\n"
            for t, s in enumerate(tiles)
        ]
        _save_png(
            dpg_grid([render_scene(s, size) for s in tiles]),
            root / "dpg" / "images" / f"{item_id}.png",
        )
        _write_text(root / "dpg" / "prompts" / f"{item_id}.txt", item_rows[0]["text"] + "\n")
    _write_text(root / "dpg" / "dpg_bench.csv", rows_to_csv(rows))
    _write_text(root / "dpg" / "scenes.jsonl", "".join(tile_lines))

    counts = {
        "scenes": n,
        "vqa_conversations": len(vqa_records),
        "vqa_questions": len(vqa_questions),
        "gqa_questions": len(gqa),
        "geneval_prompts": len(records),
        "geneval_images": len(records) * geneval_samples,
        "mme_images": len(items),
        "mme_questions": 2 * len(items),
        "dpg_items": dpg_count,
        "dpg_propositions": len(rows),
    }
    paths = {
        "images": "images",
        "scenes": "scenes.jsonl",
        "llava_captions": "llava_captions.json",
        "llava_vqa": "llava_vqa.json",
        "vqa_questions": "vqa/questions.jsonl",
        "geneval_metadata": "geneval/evaluation_metadata.jsonl",
        "geneval_reference": "geneval/reference",
        "mme_ground_truth": "mme/ground_truth",
        "mme_questions": "mme/questions.jsonl",
        "gqa_questions": "gqa/questions.json",
        "dpg_csv": "dpg/dpg_bench.csv",
        "dpg_images": "dpg/images",
    }
    if hf:
        to_hf_dataset(root).save_to_disk(str(root / "hf"))
        paths["hf"] = "hf"
    summary = ShapesDatasetSummary(str(root), split, seed, size, phrasings, counts, paths)
    _write_json(root / "manifest.json", summary.to_dict())
    return summary


def to_hf_dataset(out: str | os.PathLike[str]) -> Any:
    """The scenes of a written data set as a ``datasets.Dataset``.

    Columns: ``id``, ``image`` (``datasets.Image``), ``split``, ``scene`` (JSON), ``captions``
    (list of strings), ``conversations`` (the LLaVA VQA turns, JSON).

    Raises:
        ImportError: ``datasets`` is not installed (``pip install 'vqrae[train]'``).
    """
    import datasets  # optional dependency, imported only here

    root = Path(out)
    vqa = {
        r["id"]: r["conversations"]
        for r in json.loads((root / "llava_vqa.json").read_text(encoding="utf-8"))
    }
    rows: dict[str, list[Any]] = {
        k: [] for k in ("id", "image", "split", "scene", "captions", "conversations")
    }
    with open(root / "scenes.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            rows["id"].append(rec["id"])
            rows["image"].append(str(root / rec["image"]))
            rows["split"].append(rec["split"])
            rows["scene"].append(json.dumps(rec["scene"]))
            rows["captions"].append(rec["captions"])
            rows["conversations"].append(json.dumps(vqa[rec["id"]]))
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "split": datasets.Value("string"),
            "scene": datasets.Value("string"),
            "captions": datasets.Sequence(datasets.Value("string")),
            "conversations": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(rows, features=features)


def format_summary(summary: ShapesDatasetSummary) -> str:
    """A short terminal summary of what was written."""
    lines = [
        f"shapes data set ({summary.split}, seed {summary.seed}, {summary.size} px) in {summary.out}"
    ]
    lines += [f"  {k:<20}{v:>8}" for k, v in summary.counts.items()]
    lines.append(f"  phrasings: {', '.join(summary.phrasings)}")
    return "\n".join(lines)
