"""Tokenize captioned images once into a code data set (:mod:`vqrae.generation.data`).

Three sources, each a stream of :class:`CaptionedImage` (name, image, captions):

* :func:`shapes_items`: the shapes world, rendered at the size of the chosen code grid, with
  captions in several phrasings (a split's own: the training phrasings for ``train``, the
  held-out ones for ``validation``/``test``); a share of the scenes is drawn for a GenEval
  record (:func:`~vqrae.data.shapes.geneval_prompts.sample_geneval_prompt`) so that GenEval's
  templates and relations are as common as GenEval asks for them;
* :func:`caption_file_items`: an image folder and a captions file, ``.jsonl`` (one object per
  line with ``file``/``image``/``file_name`` and ``caption``/``text``/``prompt``, a string or a
  list) or ``.csv`` (a header with the same names);
* :func:`dataset_items`: a ``datasets`` data set (``save_to_disk`` folder or ``hf:NAME``) with an
  image column and a caption column.

Images are resized on the shorter side and centre-cropped to the grid's square size (the shapes
world renders at that size directly). :func:`prepare_codes` batches them through the VQRAE
tokenizer and writes the shards; :func:`write_eval_metadata` writes held-out GenEval prompt
files of the shapes world (GenEval's phrasing, and the held-out phrasings).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from vqrae.data.images import ImageReadError, center_crop_resize, load_image, pil_to_tensor
from vqrae.data.shapes.captions import HELDOUT_PHRASINGS, PHRASINGS, caption, captions
from vqrae.data.shapes.geneval_prompts import GENEVAL_TAGS, sample_geneval_prompt
from vqrae.data.shapes.render import render_scene
from vqrae.data.shapes.sampler import sample_scene
from vqrae.data.shapes.splits import SPLITS, default_phrasings, split_rng
from vqrae.generation.data import CodeDatasetManifest, CodeRow, ShardWriter
from vqrae.generation.model import image_size_for_grid, tokenizer_fingerprint
from vqrae.utils.files import atomic_write

__all__ = [
    "CaptionedImage",
    "SourceSpec",
    "PrepareSummary",
    "caption_file_items",
    "dataset_items",
    "prepare_codes",
    "read_captions_file",
    "shapes_items",
    "write_eval_metadata",
]

log = logging.getLogger(__name__)

_FILE_KEYS = ("file", "image", "file_name", "path")
_CAPTION_KEYS = ("caption", "captions", "text", "prompt")


@dataclass(frozen=True)
class CaptionedImage:
    """One item of a source: ``image`` (RGB) or ``None`` with the reason in ``error``."""

    name: str
    image: Image.Image | None
    prompts: list[str]
    error: str | None = None


# ----------------------------------------------------------------------------- sources


def shapes_items(
    size: int,
    n: int,
    seed: int = 0,
    split: str = "train",
    phrasings: Sequence[str] | None = None,
    geneval_fraction: float = 0.5,
    start: int = 0,
) -> Iterator[CaptionedImage]:
    """Scenes ``start .. n-1`` of the shapes world's ``split`` for base ``seed``.

    Scene ``i`` draws from ``split_rng(seed, split, "scene", i)``: with probability
    ``geneval_fraction`` it is made for a GenEval record of a uniformly drawn tag (the
    record's prompt is then its first caption, when the phrasings include ``geneval``), else
    it is a free scene. Its captions are ``phrasings`` (default: the split's).
    """
    phrasings = tuple(phrasings) if phrasings else default_phrasings(split)
    unknown = [p for p in phrasings if p not in PHRASINGS]
    if unknown:
        raise ValueError(f"unknown phrasings {unknown}; known: {list(PHRASINGS)}")
    if not 0.0 <= geneval_fraction <= 1.0:
        raise ValueError(f"geneval_fraction must lie in [0, 1], got {geneval_fraction}")
    for i in range(start, n):
        rng = split_rng(seed, split, "scene", i)
        prompts: list[str] = []
        if rng.random() < geneval_fraction:
            tag = GENEVAL_TAGS[int(rng.integers(len(GENEVAL_TAGS)))]
            record, scene = sample_geneval_prompt(rng, tag)
            if "geneval" in phrasings:
                prompts.append(record["prompt"])
        else:
            scene = sample_scene(rng)
        prompts += [c for c in captions(scene, phrasings) if c not in prompts]
        yield CaptionedImage(f"{split}-{i:07d}", render_scene(scene, size), prompts)


def _pick(row: dict[str, Any], keys: Sequence[str], where: str) -> Any:
    for key in keys:
        if key in row and row[key] not in (None, ""):
            return row[key]
    raise ValueError(f"{where}: needs one of the fields {list(keys)}, got {sorted(row)}")


def _as_prompts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"a caption must be a string or a list of strings, got {value!r}")


def read_captions_file(path: str | os.PathLike[str]) -> list[tuple[str, list[str]]]:
    """``(file, captions)`` pairs of a ``.jsonl`` or ``.csv`` captions file, in file order.

    Raises:
        ValueError: an unknown suffix, a malformed line, or a row without file or caption.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"captions file {path} not found")
    rows: list[dict[str, Any]] = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: invalid JSON ({exc})") from None
    elif path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    else:
        raise ValueError(f"{path}: a captions file is .jsonl or .csv")
    pairs = []
    for number, row in enumerate(rows, 1):
        where = f"{path} row {number}"
        pairs.append(
            (str(_pick(row, _FILE_KEYS, where)), _as_prompts(_pick(row, _CAPTION_KEYS, where)))
        )
    return pairs


def caption_file_items(
    images: str | os.PathLike[str], captions_file: str | os.PathLike[str], start: int = 0
) -> tuple[int, Iterator[CaptionedImage]]:
    """``(count, items)`` of an image folder described by a captions file (file paths relative
    to ``images``); unreadable images become error items."""
    root = Path(images)
    if not root.is_dir():
        raise ValueError(f"{root}: no such image folder")
    pairs = read_captions_file(captions_file)

    def items() -> Iterator[CaptionedImage]:
        for name, prompts in pairs[start:]:
            try:
                image = load_image(root / name)
            except ImageReadError as exc:
                yield CaptionedImage(name, None, prompts, exc.reason)
                continue
            yield CaptionedImage(name, image, prompts)

    return len(pairs), items()


def dataset_items(
    spec: str,
    caption_column: str,
    split: str | None = None,
    image_column: str | None = None,
    start: int = 0,
) -> tuple[int, Iterator[CaptionedImage]]:
    """``(count, items)`` of a ``datasets`` data set with an image and a caption column."""
    from vqrae.data.sources import TRAIN_SPLITS, open_source

    source = open_source(
        spec, split=split, image_column=image_column, label_column=caption_column,
        prefer=TRAIN_SPLITS,
    )  # fmt: skip
    column = source.dataset[caption_column]  # the raw captions (a string or a list per row)

    def items() -> Iterator[CaptionedImage]:
        for index in range(start, len(source)):
            record = source.load(index)
            prompts = _as_prompts(column[index])
            yield CaptionedImage(record.name, record.image, prompts, record.error)

    return len(source), items()


@dataclass(frozen=True)
class SourceSpec:
    """Which captioned images to tokenize (the flags of ``vqrae generation prepare``).

    Attributes:
        kind: ``"shapes"``, ``"folder"`` (``images`` + ``captions``) or ``"dataset"``.
        n, seed, split, phrasings, geneval_fraction: the shapes world (:func:`shapes_items`).
        images, captions: an image folder and its captions file (:func:`read_captions_file`).
        dataset, caption_column, image_column, dataset_split: a ``datasets`` data set.
    """

    kind: Literal["shapes", "folder", "dataset"] = "shapes"
    n: int = 10_000
    seed: int = 0
    split: str = "train"
    phrasings: tuple[str, ...] | None = None
    geneval_fraction: float = 0.5
    images: str | None = None
    captions: str | None = None
    dataset: str | None = None
    caption_column: str = "caption"
    image_column: str | None = None
    dataset_split: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("shapes", "folder", "dataset"):
            raise ValueError(f"--source must be shapes, folder or dataset, got {self.kind!r}")
        if self.kind == "shapes" and self.n < 1:
            raise ValueError(f"--n must be >= 1, got {self.n}")
        if self.kind == "shapes" and self.split not in SPLITS:
            raise ValueError(f"--split must be one of {list(SPLITS)}, got {self.split!r}")
        if self.kind == "folder" and not (self.images and self.captions):
            raise ValueError("--source folder needs --images DIR and --captions FILE")
        if self.kind == "dataset" and not self.dataset:
            raise ValueError("--source dataset needs --dataset (a save_to_disk folder or hf:NAME)")

    def describe(self) -> dict[str, Any]:
        """The settings that define the rows (recorded in the manifest)."""
        if self.kind == "shapes":
            phrasings = list(self.phrasings or default_phrasings(self.split))
            return {
                "kind": "shapes", "n": self.n, "seed": self.seed, "split": self.split,
                "phrasings": phrasings, "geneval_fraction": self.geneval_fraction,
            }  # fmt: skip
        if self.kind == "folder":
            return {"kind": "folder", "images": self.images, "captions": self.captions}
        return {
            "kind": "dataset", "dataset": self.dataset, "split": self.dataset_split,
            "caption_column": self.caption_column, "image_column": self.image_column,
        }  # fmt: skip

    def opener(self, size: int) -> Callable[[int], tuple[int, Iterator[CaptionedImage]]]:
        """``start -> (total items, items from start)`` at image side ``size``."""
        if self.kind == "shapes":

            def shapes(start: int) -> tuple[int, Iterator[CaptionedImage]]:
                items = shapes_items(
                    size, self.n, self.seed, self.split, self.phrasings,
                    self.geneval_fraction, start,
                )  # fmt: skip
                return self.n, items

            return shapes
        if self.kind == "folder":
            return lambda start: caption_file_items(self.images, self.captions, start)
        return lambda start: dataset_items(
            self.dataset, self.caption_column, self.dataset_split, self.image_column, start
        )


# ----------------------------------------------------------------------------- tokenizing


@dataclass(frozen=True)
class PrepareSummary:
    """What :func:`prepare_codes` wrote."""

    out: str
    rows: int
    new_rows: int
    failed: int
    grid: tuple[int, int]
    image_size: int
    shards: int

    def format(self) -> str:
        extra = f", {self.failed} unreadable item(s) skipped" if self.failed else ""
        return (
            f"{self.rows} rows ({self.new_rows} new) of {self.grid[0]}x{self.grid[1]} codes at "
            f"{self.image_size} px in {self.shards} shard(s){extra}: {self.out}"
        )


def prepare_codes(
    spec: SourceSpec,
    out: str | os.PathLike[str],
    tokenizer: Any,
    tokenizer_ref: str,
    grid: int,
    batch_size: int = 32,
    shard_size: int = 2048,
    progress: bool = True,
    on_failure: Callable[[CaptionedImage], None] | None = None,
) -> PrepareSummary:
    """Tokenize a source's images into the code data set ``out`` (resumable).

    Args:
        spec: the source.
        out: the data set folder (a folder of the same settings is continued).
        tokenizer: the VQRAE model (eval mode, on its device).
        tokenizer_ref: how generation will find it (its catalogue name or folder).
        grid: codes per side; the image size follows (:func:`image_size_for_grid`).
        batch_size: images per tokenizer pass.
        shard_size: rows per shard.
        progress: show a progress bar.
        on_failure: called with each unreadable item (default: logged).
    """
    from tqdm.auto import tqdm

    size = image_size_for_grid(tokenizer, grid)
    manifest = CodeDatasetManifest(
        tokenizer=tokenizer_ref,
        tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
        grid=(grid, grid),
        image_size=size,
        num_codes=tokenizer.config.codebook_size,
        source=spec.describe(),
    )
    folder = Path(out)
    writer = ShardWriter(folder, manifest, shard_size)
    consumed = writer.items_consumed
    total, items = spec.opener(size)(consumed)
    before, failed = writer.done, 0
    bar = tqdm(total=total, initial=consumed, desc="tokenize", unit="img", disable=not progress)
    batch: list[tuple[CaptionedImage, torch.Tensor, int]] = []
    device = next(tokenizer.parameters()).device

    def flush_batch() -> None:
        if not batch:
            return
        pixels = torch.stack([t for _, t, _ in batch]).to(device)  # (B, 3, S, S)
        with torch.no_grad():
            codes = tokenizer.tokenize(pixels).cpu()  # (B, H*W)
        for (item, _, seen), row in zip(batch, codes, strict=True):
            writer.add(CodeRow(item.name, item.prompts, row.tolist(), (grid, grid)), seen)
        batch.clear()

    for item in items:
        consumed += 1
        bar.update(1)
        if item.image is None:
            failed += 1
            (on_failure or (lambda it: log.warning("%s: %s", it.name, it.error)))(item)
            continue
        batch.append((item, pil_to_tensor(center_crop_resize(item.image, size)), consumed))
        if len(batch) == batch_size:
            flush_batch()
    flush_batch()
    writer.flush(consumed)
    bar.close()
    return PrepareSummary(
        out=str(folder),
        rows=writer.done,
        new_rows=writer.done - before,
        failed=failed,
        grid=(grid, grid),
        image_size=size,
        shards=len(writer.manifest.shards),
    )


# ----------------------------------------------------------------------------- evaluation


def _heldout_prompt(record: dict[str, Any], scene: Any, phrasing: str) -> str:
    """A record's prompt in a held-out phrasing: the caption of a scene that satisfies it, and
    for position records the relation, in words never used in training."""
    text = caption(scene, phrasing)
    if record["tag"] == "position":
        target, obj = record["include"][0], record["include"][1]
        text += f", with the {obj['class']} {obj['position'][0]} the {target['class']}"
    return text


def write_eval_metadata(
    out: str | os.PathLike[str], per_tag: int, seed: int = 0, split: str = "test"
) -> dict[str, Path]:
    """GenEval prompt files of unseen shapes-world records, in two phrasings.

    Writes ``out/geneval_metadata.jsonl`` (GenEval's templates) and
    ``out/heldout_metadata.jsonl`` (the same records, prompts in the held-out phrasings,
    cycled), from the ``split`` stream ``geneval`` of ``seed``: ``per_tag`` records per tag.
    Both are read by ``vqrae geneval generate --metadata``.
    """
    if split not in SPLITS or split == "train":
        raise ValueError(f"evaluation prompts come from 'validation' or 'test', not {split!r}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    geneval, heldout = [], []
    for t, tag in enumerate(GENEVAL_TAGS):
        for j in range(per_tag):
            rng = split_rng(seed, split, "geneval", t * 100_000 + j)
            record, scene = sample_geneval_prompt(rng, tag)
            geneval.append(record)
            phrasing = HELDOUT_PHRASINGS[(t + j) % len(HELDOUT_PHRASINGS)]
            heldout.append({**record, "prompt": _heldout_prompt(record, scene, phrasing)})
    paths = {}
    for name, records in (("geneval_metadata", geneval), ("heldout_metadata", heldout)):
        text = "".join(json.dumps(r) + "\n" for r in records)
        path = folder / f"{name}.jsonl"
        atomic_write(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        paths[name] = path
    return paths
