"""Image sources: folders and Hugging Face datasets stream the same records, in a fixed order."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.odd_images import write_bad_files, write_odd_images
from vqrae.data.sources import (
    DatasetSource,
    FolderSource,
    SourceError,
    iter_batches,
    label_from_path,
    open_source,
    saved_dataset_kind,
)

datasets = pytest.importorskip("datasets")


def _png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_dataset(n: int = 5, corrupt: int | None = None) -> datasets.Dataset:
    """``n`` solid images with a ClassLabel; row ``corrupt`` holds bytes that are not an image."""
    colours = [(250, 10, 10), (10, 10, 250)]
    rows = {
        "image": [
            {"bytes": b"not an image" if i == corrupt else _png_bytes(colours[i % 2]), "path": None}
            for i in range(n)
        ],
        "label": [i % 2 for i in range(n)],
    }
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["red", "blue"])}
    )
    return datasets.Dataset.from_dict(rows, features=features)


def test_folder_source_is_sorted_recursive_and_reports_bad_files(tmp_path) -> None:
    good = write_odd_images(tmp_path / "b")
    bad = write_bad_files(tmp_path / "a" / "deep")
    source = open_source(tmp_path)
    assert isinstance(source, FolderSource)
    records = list(source)
    names = [r.name for r in records]
    assert names == sorted(names) and len(records) == len(good) + len(bad)
    failed = {r.name for r in records if r.error is not None}
    assert failed == {f"a/deep/{p.name}" for p in bad.values()}
    for record in records:
        assert (record.image is None) == (record.error is not None)
        if record.image is not None:
            assert record.image.mode == "RGB"
    assert records == list(open_source(tmp_path))  # deterministic
    assert source.load(3).name == names[3]


def test_labels_from_folders_and_imagenet_style_names() -> None:
    assert label_from_path(Path("dog/x.jpg")) == "dog"
    assert label_from_path(Path("n02085620_Chihuahua.JPEG")) == "n02085620"
    assert label_from_path(Path("plain.png")) is None
    assert label_from_path(Path("_x.png")) is None


@pytest.mark.parametrize("as_dict", [False, True])
def test_saved_dataset_is_detected_and_streams_with_labels(tmp_path, as_dict) -> None:
    ds = _image_dataset(5, corrupt=3)
    target = tmp_path / "saved"
    if as_dict:
        datasets.DatasetDict({"train": ds, "validation": ds.select([0, 1])}).save_to_disk(target)
    else:
        ds.save_to_disk(target)
    assert saved_dataset_kind(target) == ("dataset_dict" if as_dict else "dataset")
    source = open_source(target)
    assert isinstance(source, DatasetSource)
    records = list(source)
    if as_dict:  # validation is preferred for evaluation; train can be named
        assert [r.label for r in records] == ["red", "blue"]
        records = list(open_source(f"hf:{target}:train"))
    assert [r.label for r in records] == ["red", "blue", "red", "blue", "red"]
    assert [r.error is not None for r in records] == [False, False, False, True, False]
    assert "not an image" in records[3].error
    assert np.asarray(records[1].image)[0, 0].tolist() == [10, 10, 250]
    assert records[4].name == "4" and source.load(0).name == "0"


def test_hf_prefix_loads_an_image_folder_with_load_dataset(tmp_path) -> None:
    for label, colour in (("cat", (200, 0, 0)), ("dog", (0, 200, 0))):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 20), colour).save(tmp_path / "data" / label / f"{i}.png")
    source = open_source(f"hf:{tmp_path / 'data'}", cache_dir=str(tmp_path / "cache"))
    records = list(source)
    assert len(records) == 4 and all(r.error is None for r in records)
    assert sorted(r.label for r in records) == ["cat", "cat", "dog", "dog"]


def test_open_source_errors_are_one_clear_line(tmp_path) -> None:
    with pytest.raises(SourceError, match="no such folder"):
        open_source(tmp_path / "missing")
    _image_dataset(2).save_to_disk(tmp_path / "one")
    with pytest.raises(SourceError, match="no split 'test'"):
        open_source(tmp_path / "one", split="test")
    datasets.DatasetDict({"a": _image_dataset(2), "b": _image_dataset(2)}).save_to_disk(
        tmp_path / "two"
    )
    with pytest.raises(SourceError, match="several splits"):
        open_source(tmp_path / "two")


def test_iter_batches_groups_good_images_and_carries_failures(tmp_path) -> None:
    ds = _image_dataset(7, corrupt=2)
    source = DatasetSource(ds)
    batches = list(iter_batches(source, batch_size=4, transform=16))
    assert [len(b) for b in batches] == [4, 2]
    assert [r.name for b in batches for r in b.failures] == ["2"]
    assert batches[0].indices == [0, 1, 3, 4] and batches[1].indices == [5, 6]
    assert batches[0].pixels.shape == (4, 3, 16, 16)
    assert batches[0].labels == ["red", "blue", "blue", "red"]
    trailing = list(iter_batches(DatasetSource(_image_dataset(3, corrupt=2)), 2, 16))
    assert [len(b) for b in trailing] == [2, 0] and len(trailing[1].failures) == 1
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_batches(source, 0, 16))
