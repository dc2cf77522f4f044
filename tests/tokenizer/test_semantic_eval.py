"""Semantic retention: similarity to a reference, k-NN, k-means purity, the HTML page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vqrae
from tests.odd_images import write_bad_files
from vqrae.cli import main
from vqrae.tokenizer.semantic_eval import bag_of_codes, build_reference, restricted_imagenet_label


def _two_colour_classes(folder: Path, per_class: int = 6) -> None:
    """Reddish and bluish images with random texture, named ``<class>_<i>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, base in (("red", (220, 40, 30)), ("blue", (30, 60, 220))):
        for i in range(per_class):
            noise = rng.normal(0, 25, (64, 64, 3))
            pixels = np.clip(np.asarray(base) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i:02d}.png")


def test_two_colour_classes_are_retained_and_clustered(tmp_path, tiny_checkpoint) -> None:
    _two_colour_classes(tmp_path / "data")
    write_bad_files(tmp_path / "data")
    out = tmp_path / "out"
    code = main(
        ["eval-semantics", "--model", str(tiny_checkpoint), "--data", str(tmp_path / "data")]
        + ["--out", str(out), "--reference", str(tiny_checkpoint), "--batch-size", "5"]
    )
    assert code == 0
    m = json.loads((out / "semantics.json").read_text())
    assert {"cosine_similarity", "knn_top1", "purity", "clusters", "num_images"} <= set(m)
    assert (m["num_images"], m["num_failed"], m["num_classes"]) == (12, 3, 2)
    assert m["cosine_similarity"] == pytest.approx(1.0, abs=1e-5)  # reference = same encoder
    assert m["knn_top1"]["model"] == 1.0 and m["knn_top1"]["reference"] == 1.0
    assert m["knn_top1"]["codes"] >= 0.9
    assert m["clusters"] == 2 and m["purity"]["features"] == 1.0
    assert m["purity"]["codes"] >= 0.9
    assert m["purity_majority_baseline"] == 0.5
    page = (out / "semantics.html").read_text()
    thumbs = re.findall(r"src='([^']+)'", page)
    assert thumbs and all((out / t).is_file() for t in thumbs)
    assert json.loads((out / "vqrae_run.json").read_text())["command"] == "eval-semantics"


def test_default_reference_is_skipped_for_an_encoder_without_weights(
    tmp_path, tiny_checkpoint, capsys
) -> None:
    _two_colour_classes(tmp_path / "data", per_class=3)
    code = main(
        ["eval-semantics", "--model", str(tiny_checkpoint), "--data", str(tmp_path / "data")]
        + ["--out", str(tmp_path / "out"), "--clusters", "3"]
    )
    assert code == 0
    m = json.loads((tmp_path / "out" / "semantics.json").read_text())
    assert m["cosine_similarity"] is None and m["knn_top1"]["reference"] is None
    assert any("no pretrained weights" in note for note in m["notes"])
    assert m["clusters"] == 3
    assert "note: " in capsys.readouterr().out
    assert (
        main(
            ["eval-semantics", "--model", str(tiny_checkpoint), "--data", str(tmp_path / "data")]
            + ["--out", str(tmp_path / "o2"), "--reference", "no-such-thing"]
        )
        == 1
    )
    assert "is not a checkpoint directory" in capsys.readouterr().err


def test_build_reference_resolves_names(tiny_checkpoint) -> None:
    model = vqrae.VQRAE.from_pretrained(tiny_checkpoint)
    encoder, name, note = build_reference(str(tiny_checkpoint), model)
    assert encoder is not None and note is None and name == str(tiny_checkpoint)
    assert build_reference("none", model)[0] is None
    with pytest.raises(ValueError, match="has no pretrained weights"):
        build_reference("tiny-test", model)


def test_restricted_imagenet_groups() -> None:
    assert restricted_imagenet_label("n02085620") == "dog"  # Chihuahua, class 151
    assert restricted_imagenet_label("n02113978") == "dog"  # Mexican hairless, class 268
    assert restricted_imagenet_label("n02655020") == "fish"  # puffer, class 397
    assert restricted_imagenet_label("n01440764") is None  # tench, class 0: not in a group
    assert restricted_imagenet_label(None) is None


def test_bag_of_codes_counts_per_image() -> None:
    codes = torch.tensor([[5, 5, 9, 2], [9, 9, 9, 9]])
    bags = bag_of_codes(codes)  # columns: codes 2, 5, 9
    torch.testing.assert_close(bags, torch.tensor([[0.25, 0.5, 0.25], [0.0, 0.0, 1.0]]))
