"""Image sources: one way to stream images from a folder or a Hugging Face dataset.

A source is opened from a string (what ``--data`` flags take):

* a folder of image files: searched recursively, files in sorted order;
* a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk`` (detected by its
  ``state.json`` / ``dataset_dict.json``);
* ``hf:NAME_OR_PATH[:SPLIT]``: anything ``datasets.load_dataset`` accepts (a Hub name when the
  Hub is reachable, a local script-less folder such as an image folder, ...), or a
  ``save_to_disk`` folder.

Every source has a length, random access (:meth:`ImageSource.load`) and a deterministic
iteration order (sorted files; dataset row order), and yields :class:`SourceRecord`
``(name, image, error, label)`` one image at a time: a file or row that cannot be decoded gives a
record with ``image=None`` and the reason in ``error``, so callers count failures instead of
stopping. Dataset images are decoded here, not by ``datasets``, with the same conversions as
:func:`vqrae.data.images.load_image` (EXIF orientation, alpha over white, 16-bit scaling).

Labels: in a folder, the first sub-folder under the root (the ImageFolder convention), else the
file-name part before the first underscore (ImageNet style, ``n02085620_Chihuahua.JPEG`` ->
``n02085620``), else ``None``. In a dataset, the ``label`` column (or the only ``ClassLabel``
column), as the class name for ``ClassLabel`` features.

:func:`iter_batches` turns records into batches of image tensors (the ADM centre crop by
default, any transform for training) with their names, labels and the failures met on the way.
"""

from __future__ import annotations

import io
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vqrae.data.images import (
    ImageReadError,
    center_crop_resize,
    list_images,
    load_image,
    pil_to_tensor,
    to_rgb,
)

__all__ = [
    "DatasetSource",
    "FileListSource",
    "FolderSource",
    "ImageBatch",
    "ImageSource",
    "SourceError",
    "SourceRecord",
    "center_crop_transform",
    "iter_batches",
    "label_from_path",
    "TRAIN_SPLITS",
    "open_source",
    "saved_dataset_kind",
]

HF_PREFIX = "hf:"
DEFAULT_SPLITS = ("validation", "val", "test", "train")  # eval preference when none is named
TRAIN_SPLITS = ("train",)  # training preference when none is named


class SourceError(ValueError):
    """A data source cannot be opened (missing folder, unknown dataset, bad split...)."""


class SourceRecord(NamedTuple):
    """One item of a source: ``image`` is RGB, or ``None`` with the reason in ``error``."""

    name: str
    image: Image.Image | None
    error: str | None
    label: str | None


# ---------------------------------------------------------------------------- sources
class ImageSource(ABC):
    """A finite, ordered collection of images, read one at a time."""

    description: str = ""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, index: int) -> SourceRecord:
        """The record at position ``index`` (decoded now; errors become error records)."""

    def __iter__(self) -> Iterator[SourceRecord]:
        for index in range(len(self)):
            yield self.load(index)

    def take(self, limit: int | None) -> Iterator[SourceRecord]:
        """Iterate over the first ``limit`` records (all when ``None``)."""
        if limit is None:
            yield from self
            return
        for index, record in enumerate(self):
            if index >= limit:
                return
            yield record

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r}, {len(self)} items)"


def label_from_path(relative: Path) -> str | None:
    """Label of a file from its path relative to the folder root (see the module docstring)."""
    if len(relative.parts) > 1:
        return relative.parts[0]
    prefix, sep, rest = relative.stem.partition("_")
    return prefix if sep and prefix and rest else None


class FolderSource(ImageSource):
    """The image files under a folder (recursive, sorted); names are paths relative to it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: not a folder")
        self.paths = list_images([self.root], recursive=True)
        self.description = str(self.root)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> SourceRecord:
        path = self.paths[index]
        relative = path.relative_to(self.root)
        name, label = relative.as_posix(), label_from_path(relative)
        try:
            return SourceRecord(name, load_image(path), None, label)
        except ImageReadError as exc:
            return SourceRecord(name, None, exc.reason, label)


class FileListSource(ImageSource):
    """Named image files and the images under named folders (:func:`list_images`); names are
    the paths as given, so an error names the file the user typed."""

    def __init__(self, inputs: Iterable[str | os.PathLike[str]]) -> None:
        self.paths = list_images(inputs, recursive=True)
        self.description = f"{len(self.paths)} file(s)"

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> SourceRecord:
        path = self.paths[index]
        try:
            return SourceRecord(str(path), load_image(path), None, None)
        except ImageReadError as exc:
            return SourceRecord(str(path), None, exc.reason, None)


class DatasetSource(ImageSource):
    """The rows of a ``datasets.Dataset`` with an image column.

    The image column is read undecoded (``Image(decode=False)``) and decoded per row here, so a
    corrupt row becomes an error record. The Arrow table is memory-mapped by ``datasets``:
    nothing is loaded up front.

    Args:
        dataset: a ``datasets.Dataset``.
        description: how the source was named (for messages and records).
        image_column: the image column (default: the only ``Image`` feature, else ``image``).
        label_column: the label column (default: ``label`` or the only ``ClassLabel`` column;
            no labels when neither exists).
    """

    def __init__(
        self,
        dataset: Any,
        description: str = "dataset",
        image_column: str | None = None,
        label_column: str | None = None,
    ) -> None:
        from datasets import Image as ImageFeature

        self.description = description
        self.image_column = image_column or _find_image_column(dataset, description)
        if self.image_column not in dataset.column_names:
            raise SourceError(
                f"{description}: no column {self.image_column!r} "
                f"(columns: {', '.join(dataset.column_names)})"
            )
        self.label_column = label_column or _find_label_column(dataset)
        if self.label_column is not None and self.label_column not in dataset.column_names:
            raise SourceError(f"{description}: no label column {self.label_column!r}")
        self.label_names = _class_names(dataset, self.label_column)
        columns = [c for c in (self.image_column, self.label_column) if c is not None]
        dataset = dataset.select_columns(columns)  # other columns are never read
        self.dataset = dataset.cast_column(self.image_column, ImageFeature(decode=False))
        self._width = len(str(max(len(dataset) - 1, 0)))

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int) -> SourceRecord:
        return self._record(index, self.dataset[index])

    def __iter__(self) -> Iterator[SourceRecord]:
        for index, row in enumerate(self.dataset):  # sequential Arrow reads
            yield self._record(index, row)

    def _record(self, index: int, row: dict[str, Any]) -> SourceRecord:
        cell = row[self.image_column]
        original = Path(cell["path"]).name if isinstance(cell, dict) and cell.get("path") else ""
        name = f"{index:0{self._width}d}" + (f"_{original}" if original else "")
        label = self._label(row)
        try:
            return SourceRecord(name, _decode_cell(cell), None, label)
        except ImageReadError as exc:
            return SourceRecord(name, None, exc.reason, label)

    def _label(self, row: dict[str, Any]) -> str | None:
        if self.label_column is None:
            return None
        value = row[self.label_column]
        if value is None:
            return None
        if self.label_names is not None and isinstance(value, int) and value >= 0:
            return self.label_names[value]
        return str(value)


def _find_image_column(dataset: Any, description: str) -> str:
    from datasets import Image as ImageFeature

    found = [k for k, v in dataset.features.items() if isinstance(v, ImageFeature)]
    if len(found) == 1:
        return found[0]
    if "image" in dataset.column_names:
        return "image"
    raise SourceError(
        f"{description}: cannot tell which column holds the images "
        f"(Image features: {found or 'none'}); name it explicitly"
    )


def _find_label_column(dataset: Any) -> str | None:
    from datasets import ClassLabel

    if "label" in dataset.column_names:
        return "label"
    found = [k for k, v in dataset.features.items() if isinstance(v, ClassLabel)]
    return found[0] if len(found) == 1 else None


def _class_names(dataset: Any, column: str | None) -> list[str] | None:
    from datasets import ClassLabel

    feature = dataset.features.get(column) if column is not None else None
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def _decode_cell(cell: Any) -> Image.Image:
    """An undecoded ``Image`` cell (``{"bytes", "path"}``), or a PIL image, -> RGB."""
    if isinstance(cell, Image.Image):
        return to_rgb(cell)
    if not isinstance(cell, dict):
        raise ImageReadError("<row>", f"unsupported image cell of type {type(cell).__name__}")
    data, path = cell.get("bytes"), cell.get("path")
    if data is None:
        if not path:
            raise ImageReadError("<row>", "empty image cell")
        return load_image(path)
    where = path or "<bytes>"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return to_rgb(image)
    except UnidentifiedImageError:
        raise ImageReadError(where, "not an image Pillow can identify") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(where, f"corrupt or unreadable image ({exc})") from None


# ---------------------------------------------------------------------------- opening
def saved_dataset_kind(path: str | os.PathLike[str]) -> str | None:
    """``"dataset"`` / ``"dataset_dict"`` for a ``save_to_disk`` folder, else ``None``."""
    path = Path(path)
    if (path / "dataset_dict.json").is_file():
        return "dataset_dict"
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        return "dataset"
    return None


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise SourceError(
            "reading Hugging Face datasets needs the 'datasets' package (pip install datasets)"
        ) from None
    return datasets


def _pick_split(
    splits: dict[str, Any], split: str | None, description: str, prefer: tuple[str, ...]
) -> tuple[Any, str]:
    names = list(splits)
    if split is not None:
        if split not in splits:
            raise SourceError(f"{description}: no split {split!r} (splits: {', '.join(names)})")
        return splits[split], split
    for candidate in prefer:
        if candidate in splits:
            return splits[candidate], candidate
    if len(names) == 1:
        return splits[names[0]], names[0]
    raise SourceError(f"{description}: several splits ({', '.join(names)}); name one")


def _parse_hf(spec: str) -> tuple[str, str | None]:
    """``hf:NAME_OR_PATH[:SPLIT]`` -> (name, split); a split never contains ``/``."""
    body = spec[len(HF_PREFIX) :]
    head, sep, tail = body.rpartition(":")
    if sep and head and tail and "/" not in tail and "\\" not in tail:
        return head, tail
    return body, None


def _open_saved(
    path: Path, split: str | None, prefer: tuple[str, ...], **columns: str | None
) -> DatasetSource:
    datasets = _import_datasets()
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise SourceError(f"{path}: cannot load the saved dataset ({exc})") from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded, split = _pick_split(dict(loaded), split, str(path), prefer)
    elif split is not None:
        raise SourceError(f"{path}: a single saved Dataset has no split {split!r}")
    description = f"{path}" + (f" [{split}]" if split else "")
    return DatasetSource(loaded, description, **columns)


def _open_hub(
    name: str,
    split: str | None,
    cache_dir: str | None,
    prefer: tuple[str, ...],
    **columns: str | None,
) -> DatasetSource:
    datasets = _import_datasets()
    try:
        loaded = datasets.load_dataset(name, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the user needs one line
        raise SourceError(
            f"hf:{name}: load_dataset failed ({type(exc).__name__}: {exc})".splitlines()[0]
        ) from None
    loaded, split = _pick_split(dict(loaded), split, f"hf:{name}", prefer)
    return DatasetSource(loaded, f"hf:{name} [{split}]", **columns)


def open_source(
    spec: str | os.PathLike[str],
    split: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    cache_dir: str | None = None,
    prefer: tuple[str, ...] = DEFAULT_SPLITS,
) -> ImageSource:
    """Open a folder, a ``save_to_disk`` folder or ``hf:NAME_OR_PATH[:SPLIT]`` as a source.

    Args:
        spec: what to open (see the module docstring).
        split: the split of a dataset dict; overrides a ``:SPLIT`` suffix. Default: the first
            of validation, val, test, train that exists, or the only split.
        image_column: dataset image column (default: detected).
        label_column: dataset label column (default: detected).
        cache_dir: ``datasets`` cache for ``hf:`` names (default: its own).
        prefer: splits to try, in order, when none is named (evaluation prefers validation;
            training passes :data:`TRAIN_SPLITS`).

    Raises:
        SourceError: the source does not exist or cannot be read as images.
    """
    text = os.fspath(spec)
    columns = {"image_column": image_column, "label_column": label_column}
    if text.startswith(HF_PREFIX):
        name, suffix_split = _parse_hf(text)
        split = split or suffix_split
        if Path(name).is_dir() and saved_dataset_kind(name):
            return _open_saved(Path(name), split, prefer, **columns)
        return _open_hub(name, split, cache_dir, prefer, **columns)
    path = Path(text)
    if not path.exists():
        raise SourceError(f"{path}: no such folder (use hf:NAME for a Hugging Face dataset)")
    if saved_dataset_kind(path):
        return _open_saved(path, split, prefer, **columns)
    return FolderSource(path)


# ---------------------------------------------------------------------------- batching
Transform = Callable[[Image.Image], torch.Tensor]


def center_crop_transform(size: int) -> Transform:
    """The evaluation transform: ADM centre crop to ``size`` -> float (3, size, size) in [0, 1]."""

    def transform(image: Image.Image) -> torch.Tensor:
        return pil_to_tensor(center_crop_resize(image, size))

    return transform


@dataclass
class ImageBatch:
    """Up to ``batch_size`` transformed images, in source order, with what came with them.

    Attributes:
        indices: positions of the images in the record stream.
        names: record names.
        labels: record labels (``None`` where unknown).
        pixels: (B, 3, H, W) float tensor; B may be 0 for a trailing batch of failures only.
        failures: error records met since the previous batch (unreadable or untransformable).
    """

    indices: list[int]
    names: list[str]
    labels: list[str | None]
    pixels: torch.Tensor
    failures: list[SourceRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


def iter_batches(
    records: Iterable[SourceRecord],
    batch_size: int,
    transform: Transform | int,
) -> Iterator[ImageBatch]:
    """Group records into batches of ``batch_size`` good images (the last may be smaller).

    Only one batch of decoded images is held at a time. Failures travel with the next batch
    (a final batch with no images carries the trailing ones), so a consumer sees every record.

    Args:
        records: e.g. an :class:`ImageSource` or ``source.take(n)``.
        batch_size: images per batch (>= 1).
        transform: PIL RGB -> (3, H, W) tensor, or an int: :func:`center_crop_transform` size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fn = center_crop_transform(transform) if isinstance(transform, int) else transform
    pending: list[tuple[int, SourceRecord, torch.Tensor]] = []
    failures: list[SourceRecord] = []
    for index, record in enumerate(records):
        if record.image is None:
            failures.append(record)
            continue
        try:
            tensor = fn(record.image)
        except (OSError, ValueError) as exc:
            failures.append(record._replace(image=None, error=f"transform failed ({exc})"))
            continue
        pending.append((index, record, tensor))
        if len(pending) == batch_size:
            yield _make_batch(pending, failures)
            pending, failures = [], []
    if pending or failures:
        yield _make_batch(pending, failures)


def _make_batch(
    pending: list[tuple[int, SourceRecord, torch.Tensor]], failures: list[SourceRecord]
) -> ImageBatch:
    pixels = torch.stack([t for _, _, t in pending]) if pending else torch.empty(0, 3, 0, 0)
    return ImageBatch(
        indices=[i for i, _, _ in pending],
        names=[r.name for _, r, _ in pending],
        labels=[r.label for _, r, _ in pending],
        pixels=pixels,
        failures=list(failures),
    )
