"""Code data sets: shards, resumable preparation, captions files, datasets sources, caption
choice and dropout, the collator, held-out GenEval prompt files."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

import vqrae
from vqrae.data.training import SampleRef
from vqrae.eval.geneval import validate_metadata
from vqrae.generation.data import (
    CodeDataset,
    TrainingCollator,
    load_code_dataset,
    read_manifest,
)
from vqrae.generation.prepare import (
    SourceSpec,
    prepare_codes,
    read_captions_file,
    shapes_items,
    write_eval_metadata,
)

from .conftest import GRID


def test_shapes_code_data_set_has_its_manifest_and_rows(shapes_codes, vqrae_dir) -> None:
    manifest = read_manifest(shapes_codes)
    assert manifest.num_rows == 24 and manifest.items_consumed == 24
    assert manifest.shards == ["shards/00000", "shards/00001", "shards/00002"]
    assert manifest.grid == (GRID, GRID) and manifest.image_size == 56 and manifest.num_codes == 64
    assert manifest.source["phrasings"][0] == "geneval" and manifest.tokenizer == str(vqrae_dir)
    rows = load_code_dataset(shapes_codes)
    assert len(rows) == 24 and rows[0]["grid"] == [GRID, GRID] and len(rows[0]["codes"]) == 16
    assert rows[0]["id"] == "train-0000000" and len(rows[0]["prompts"]) >= 2
    tokenizer = vqrae.VQRAE.from_pretrained(vqrae_dir)
    first = next(shapes_items(56, 1))
    from vqrae.data.images import pil_to_tensor

    with torch.no_grad():
        expected = tokenizer.tokenize(pil_to_tensor(first.image)[None])[0].tolist()
    assert rows[0]["codes"] == expected and rows[0]["prompts"] == first.prompts


def test_an_interrupted_preparation_continues_to_the_same_rows(
    shapes_codes, tmp_path, vqrae_dir
) -> None:
    copy = tmp_path / "codes"
    shutil.copytree(shapes_codes, copy)
    manifest = json.loads((copy / "dataset.json").read_text())
    manifest.update(shards=manifest["shards"][:1], num_rows=10, items_consumed=10)
    (copy / "dataset.json").write_text(json.dumps(manifest))  # as if killed after one shard
    shutil.rmtree(copy / "shards" / "00002")
    tokenizer = vqrae.VQRAE.from_pretrained(vqrae_dir)
    summary = prepare_codes(
        SourceSpec(n=24), copy, tokenizer, str(vqrae_dir), GRID, shard_size=10, progress=False
    )
    assert summary.rows == 24 and summary.new_rows == 14
    assert load_code_dataset(copy)["codes"] == load_code_dataset(shapes_codes)["codes"]
    with pytest.raises(ValueError, match="other settings"):
        prepare_codes(SourceSpec(n=25), copy, tokenizer, str(vqrae_dir), GRID, progress=False)


def test_captioned_folder_and_dataset_sources(tmp_path, vqrae_dir) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (80, 60), (40 * i, 90, 200)).save(folder / f"im{i}.png")
    (folder / "bad.png").write_bytes(b"not an image")
    lines = [{"file": "im0.png", "caption": "a blue field"}, {"image": "bad.png", "text": "x"},
             {"file_name": "im2.png", "captions": ["one", "two"]}]  # fmt: skip
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "captions.csv").write_text("file,caption\nim1.png,a plain image\n")
    assert read_captions_file(tmp_path / "captions.csv") == [("im1.png", ["a plain image"])]
    tokenizer = vqrae.VQRAE.from_pretrained(vqrae_dir)
    failures = []
    spec = SourceSpec(kind="folder", images=str(folder), captions=str(tmp_path / "captions.jsonl"))
    summary = prepare_codes(spec, tmp_path / "a", tokenizer, "t", GRID, progress=False,
                            on_failure=failures.append)  # fmt: skip
    assert (summary.rows, summary.failed, [f.name for f in failures]) == (2, 1, ["bad.png"])
    assert load_code_dataset(tmp_path / "a")["prompts"] == [["a blue field"], ["one", "two"]]
    assert read_manifest(tmp_path / "a").items_consumed == 3

    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict(
        {
            "image": [Image.new("RGB", (56, 56), (i * 60, 0, 0)) for i in range(3)],
            "caption": ["red one", "red two", "red three"],
        }  # fmt: skip
    ).cast_column("image", datasets.Image())
    table.save_to_disk(str(tmp_path / "hf"))
    spec = SourceSpec(kind="dataset", dataset=str(tmp_path / "hf"))
    summary = prepare_codes(spec, tmp_path / "b", tokenizer, "t", GRID, progress=False)
    assert summary.rows == 3
    assert load_code_dataset(tmp_path / "b")["prompts"][2] == ["red three"]
    with pytest.raises(ValueError, match="--images"):
        SourceSpec(kind="folder")


def test_caption_choice_and_dropout_are_functions_of_the_sample_seed(shapes_codes) -> None:
    dataset = CodeDataset([shapes_codes], caption_dropout=0.25)
    refs = [SampleRef(i % 24, seed) for i, seed in enumerate(range(1000, 1800))]
    first = [dataset[r].prompt for r in refs]
    assert [dataset[r].prompt for r in refs] == first  # deterministic
    dropped = sum(p == "" for p in first) / len(first)
    assert 0.19 < dropped < 0.31
    row = dataset.row(0)
    chosen = {dataset[SampleRef(0, s)].prompt for s in range(200)} - {""}
    assert chosen == set(row["prompts"])  # every phrasing is drawn
    assert torch.equal(dataset[refs[0]].codes, torch.tensor(dataset.row(refs[0].index)["codes"]))
    with pytest.raises(ValueError, match="caption_dropout"):
        CodeDataset([shapes_codes], caption_dropout=1.0)


def test_collator_builds_left_padded_batches(shapes_codes, generator) -> None:
    dataset = CodeDataset([shapes_codes], caption_dropout=0.0)
    collate = TrainingCollator(generator.text_tokenizer, generator.vocab, max_prompt_tokens=6)
    batch = collate([dataset[SampleRef(0, 1)], dataset[SampleRef(1, 2)]])
    assert batch.codes.shape == (2, 16) and batch.image_start <= 6
    assert batch.input_ids[:, batch.image_start].tolist() == [generator.vocab.boi_id] * 2


def test_eval_prompt_files_hold_unseen_records_in_two_phrasings(tmp_path) -> None:
    paths = write_eval_metadata(tmp_path, per_tag=2, seed=0)
    geneval = [json.loads(x) for x in paths["geneval_metadata"].read_text().splitlines()]
    heldout = [json.loads(x) for x in paths["heldout_metadata"].read_text().splitlines()]
    assert len(geneval) == len(heldout) == 12
    for a, b in zip(geneval, heldout, strict=True):
        validate_metadata(a, "geneval")
        validate_metadata(b, "heldout")
        assert {k: v for k, v in a.items() if k != "prompt"} == {
            k: v for k, v in b.items() if k != "prompt"
        }
        assert a["prompt"].startswith("a photo of") and a["prompt"] != b["prompt"]
    position = [b for b in heldout if b["tag"] == "position"]
    assert all(b["include"][1]["position"][0] in b["prompt"] for b in position)
    with pytest.raises(ValueError, match="not 'train'"):
        write_eval_metadata(tmp_path, 1, split="train")
