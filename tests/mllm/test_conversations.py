"""LLaVA's conversation files as they are, and the data sources built on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vqrae.mllm.conversations import load_llava_json
from vqrae.mllm.sources import (
    CAPTION_PROMPTS,
    SourceConfig,
    imagenet_conversations,
    imagenet_label,
    load_source,
    load_sources,
)

# The two public files' record shapes (LLaVA-Pretrain-558K: blip_laion_cc_sbu_558k.json;
# LLaVA-v1.5-mix665K: llava_v1_5_mix665k.json, which also holds text-only conversations).
PRETRAIN = {
    "id": "004539375",
    "image": "00453/004539375.jpg",
    "conversations": [
        {"from": "human", "value": "Render a clear and concise summary of the photo.\n<image>"},
        {"from": "gpt", "value": "select luxury furniture 3 - inch gel memory foam mattress"},
    ],
}
MIX = {
    "id": "000000033471",
    "image": "coco/train2017/000000033471.jpg",
    "conversations": [
        {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
        {"from": "gpt", "value": "The bus in the image is white and red."},
        {"from": "human", "value": "What feature can be seen on the back of the bus?"},
        {"from": "gpt", "value": "The back of the bus features an advertisement."},
    ],
}
TEXT_ONLY = {
    "id": "i6IyJda_0",
    "conversations": [
        {"from": "human", "value": "How to tell if a customer segment is well segmented?"},
        {"from": "gpt", "value": "1. Homogeneity ..."},
    ],
}


def _write(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records))
    return path


def test_llava_files_are_read_as_they_are(tmp_path) -> None:
    path = _write(tmp_path / "mix.json", [PRETRAIN, MIX, TEXT_ONLY])
    conversations, report = load_llava_json(path, tmp_path / "images", source="mix")
    assert report.kept == 3 and not report.skipped
    pretrain, mix, text = conversations
    assert pretrain.image == str(tmp_path / "images" / "00453" / "004539375.jpg")
    assert pretrain.messages[0] == {
        "role": "user",
        "content": "Render a clear and concise summary of the photo.",
    }
    assert [m["role"] for m in mix.messages] == ["user", "assistant", "user", "assistant"]
    assert mix.messages[0]["content"] == "What are the colors of the bus in the image?"
    assert text.image is None and not text.has_image and text.source == "mix"
    default_folder, _ = load_llava_json(path)
    assert default_folder[1].image == str(tmp_path / "coco/train2017/000000033471.jpg")


def test_unusable_records_are_counted_by_reason_not_dropped_silently(tmp_path) -> None:
    leading_gpt = {**MIX, "conversations": [{"from": "gpt", "value": "Hi"}, *MIX["conversations"]]}
    twice = {**MIX, "conversations": [MIX["conversations"][0], MIX["conversations"][0]]}
    empty = {"id": "x", "conversations": []}
    robot = {**MIX, "conversations": [{"from": "robot", "value": "beep"}]}
    path = _write(tmp_path / "bad.json", [leading_gpt, twice, empty, robot, "nope"])
    conversations, report = load_llava_json(path)
    assert len(conversations) == 1 and report.dropped_leading_turns == 1  # as LLaVA does
    assert dict(report.skipped) == {
        "without an answer": 1,
        "without conversations": 1,
        "with an unknown role": 1,
        "that are not objects": 1,
    }
    assert "4 conversation" not in report.summary() and "skipped" in report.summary()
    with pytest.raises(ValueError, match="record 1 is unusable"):
        load_llava_json(path, strict=True)
    with pytest.raises(ValueError, match="not found"):
        load_llava_json(tmp_path / "missing.json")
    (tmp_path / "obj.json").write_text("{}")
    with pytest.raises(ValueError, match="JSON list"):
        load_llava_json(tmp_path / "obj.json")


def test_imagenet_labels_come_from_the_file_names() -> None:
    assert imagenet_label("n01440764_tench.JPEG") == "tench"
    assert imagenet_label("/x/n01484850_great_white_shark.JPEG") == "great white shark"
    assert imagenet_label("README.md") is None and imagenet_label("cat_dog.png") is None


def test_imagenet_sample_captions_and_questions_read_in_place(imagenet_sample_dir) -> None:
    captions = imagenet_conversations(imagenet_sample_dir, "captions", seed=0)
    assert len(captions) == 1000
    tench = next(c for c in captions if c.id.endswith("tench"))
    assert Path(tench.image).parent == imagenet_sample_dir  # the images are never copied
    assert "tench" in tench.messages[1]["content"] and tench.messages[0]["content"] == ""
    vqa = imagenet_conversations(imagenet_sample_dir, "vqa", seed=0)
    first = next(c for c in vqa if c.id.endswith("great_white_shark"))
    assert first.messages[1]["content"] == "Great white shark"
    assert first.messages[0]["content"].endswith(
        "Answer the question using a single word or phrase."
    )


def test_shapes_sources_write_the_world_when_asked_and_fill_caption_prompts(tmp_path) -> None:
    root = tmp_path / "shapes"
    with pytest.raises(ValueError, match="holds no shapes data set"):
        load_source(SourceConfig(kind="shapes", path=str(root)))
    source = SourceConfig(kind="shapes", path=str(root), style="captions", scenes=4, size=56)
    captions = load_source(source)
    assert len(captions) == 4 and (root / "images" / "000000.png").is_file()
    assert all(c.messages[0]["content"] in CAPTION_PROMPTS for c in captions)
    assert all(Path(c.image).is_file() for c in captions)
    vqa = load_source(SourceConfig(kind="shapes", path=str(root), style="vqa"))
    assert all(len(c.messages) >= 4 for c in vqa)  # multi-turn questions
    both = load_sources([source, SourceConfig(kind="shapes", path=str(root), repeat=3, limit=2)])
    assert len(both) == 4 + 6
