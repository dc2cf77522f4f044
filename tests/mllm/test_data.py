"""Training samples, batches of a step, and the feature cache of a frozen encoder."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

from vqrae.llm import IGNORE_INDEX
from vqrae.mllm.conversations import Conversation
from vqrae.mllm.data import ConversationDataset, StepBatches, check_samples, collate
from vqrae.mllm.feature_cache import FeatureCache
from vqrae.mllm.vision import VisionFeatures
from vqrae.utils.distributed import DistributedContext


def _images(folder, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.new("RGB", (40 + 8 * i, 56), (30 * i, 100, 200 - 20 * i)).save(path)
        paths.append(str(path))
    return paths


def _conversations(images: list[str | None]) -> list[Conversation]:
    return [
        Conversation(
            f"c{i}",
            image,
            (
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": "Yes" if i % 2 else "No"},
            ),
            "test",
        )
        for i, image in enumerate(images)
    ]


def test_step_batches_are_split_over_processes_without_changing_the_global_batch() -> None:
    batches = StepBatches(num_samples=10, batch_size=4, seed=1)
    assert batches.steps_for(1.0) == 3 and batches.steps_for(2.0) == 5
    seen = [i for s in range(5) for i in batches.global_batch(s)]
    assert sorted(seen) == sorted(list(range(10)) * 2)  # two epochs, each a permutation
    for step in range(5):
        one = batches.micro_batches(step, 0, 1, 2)
        two = [m for r in range(2) for m in batches.micro_batches(step, r, 2, 1)]
        assert (
            [i for m in one for i in m] == [i for m in two for i in m] == batches.global_batch(step)
        )
    assert StepBatches(10, 4, 1).global_batch(3) == batches.global_batch(
        3
    )  # a function of the step
    with pytest.raises(ValueError, match="multiple"):
        batches.micro_batches(0, 0, 3, 1)


def test_collate_pads_right_and_counts_targets(tiny_mllm, tmp_path) -> None:
    images = _images(tmp_path / "img", 2)
    dataset = ConversationDataset(
        _conversations([images[0], None]),
        tiny_mllm.tokenizer,
        tiny_mllm.config,
        template="chat",
        image_token_id=tiny_mllm.image_token_id,
        num_image_tokens=tiny_mllm.num_image_tokens,
        vision=tiny_mllm.vision,
    )
    examples = [dataset[0], dataset[1]]
    batch = collate(examples, pad_id=0)
    assert batch.images is not None and batch.images.shape == (2, 3, 56, 56)
    assert batch.images[1].abs().sum() == 0  # the text-only row holds zeros
    short = min(len(e.input_ids) for e in examples)
    row = 0 if len(examples[0].input_ids) == short else 1
    assert batch.attention_mask[row, short:].sum() == 0
    assert (batch.labels[row, short:] == IGNORE_INDEX).all()
    assert batch.num_targets == sum(
        sum(label != IGNORE_INDEX for label in e.labels[1:]) for e in examples
    )


def test_a_sample_the_template_cannot_label_stops_training_naming_it(tiny_mllm) -> None:
    tiny_mllm.tokenizer.chat_template = (  # a template that rewrites the answers
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | upper }}"
        "<|im_end|>\n{% endfor %}"
    )
    dataset = ConversationDataset(
        _conversations([None, None]),
        tiny_mllm.tokenizer,
        tiny_mllm.config,
        template="chat",
        image_token_id=tiny_mllm.image_token_id,
        num_image_tokens=tiny_mllm.num_image_tokens,
        vision=tiny_mllm.vision,
    )
    with pytest.raises(ValueError, match="sample 'c0' of test"):
        check_samples(dataset)


def test_the_feature_cache_equals_the_features_and_resumes_by_shard(tiny_mllm, tmp_path) -> None:
    images = _images(tmp_path / "img", 5) + [str(tmp_path / "img" / "missing.png")]
    vision = tiny_mllm.vision
    cache = FeatureCache(tmp_path / "cache", vision, images, shard_size=2)
    context = DistributedContext()
    cache.build(context, batch_size=2)
    cache.load()
    assert cache.num_shards == 3 and set(cache.failed) == {os.path.abspath(images[-1])}
    for path in images[:5]:
        expected = vision(vision.load(path)[None])[0].to(torch.float16)
        torch.testing.assert_close(cache[path], expected)
    shards = sorted(cache.folder.glob("shard_*.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in shards}
    shards[1].unlink()
    again = FeatureCache(tmp_path / "cache", vision, images, shard_size=2)
    again.build(context, batch_size=2)
    assert all(p.stat().st_mtime_ns == stamps[p] for p in (shards[0], shards[2]))
    again.load()
    torch.testing.assert_close(again[images[2]], cache[images[2]])
    other = FeatureCache(tmp_path / "cache", VisionFeatures(vision.tokenizer, pool=None), images)
    assert other.folder != cache.folder  # another pooling, another cache


def test_the_dataset_reads_cached_features(tiny_mllm, tmp_path) -> None:
    images = _images(tmp_path / "img", 2)
    cache = FeatureCache(tmp_path / "cache", tiny_mllm.vision, images)
    cache.build(DistributedContext())
    cache.load()
    dataset = ConversationDataset(
        _conversations(images),
        tiny_mllm.tokenizer,
        tiny_mllm.config,
        template="chat",
        image_token_id=tiny_mllm.image_token_id,
        num_image_tokens=tiny_mllm.num_image_tokens,
        cache=cache,
    )
    example = dataset[1]
    assert example.image is None and example.features.dtype == torch.float32
    torch.testing.assert_close(example.features, cache[images[1]].float())
    check = check_samples(dataset)
    assert check.count == 2 and check.truncated == 0 and check.without_targets == 0
