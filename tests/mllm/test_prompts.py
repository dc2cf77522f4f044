"""Samples as token ids: the placeholder, its expansion, the label masks of both templates."""

from __future__ import annotations

import pytest

from vqrae.llm import IGNORE_INDEX, IMAGE_TOKEN, tokenize_chat
from vqrae.llm.testing import toy_tokenizer
from vqrae.mllm.config import MLLMConfig
from vqrae.mllm.language import load_language_model, stop_token_ids
from vqrae.mllm.prompts import (
    build_messages,
    expand_image_token,
    prompt_ids,
    tokenize_conversation,
    with_image,
)

TURNS = [
    {"role": "user", "content": "<image>\nWhat colour is the hexagon?"},
    {"role": "assistant", "content": "It is purple."},
    {"role": "user", "content": "How many crosses are there?"},
    {"role": "assistant", "content": "There are three."},
]


@pytest.fixture(scope="module")
def lm_parts(toy_lm_dir):
    config = MLLMConfig(tokenizer="unused", lm=str(toy_lm_dir))
    lm, tokenizer, vocab = load_language_model(config, device="cpu")
    return config, tokenizer, vocab


def _runs(labels: list[int]) -> list[list[int]]:
    runs, current = [], []
    for label in labels:
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(label)
    return runs + ([current] if current else [])


def test_the_image_goes_first_in_the_first_user_turn() -> None:
    assert with_image("What is it?\n<image>") == f"{IMAGE_TOKEN}\nWhat is it?"
    config = MLLMConfig(system_prompt="Be brief.")
    messages = build_messages(config, TURNS, has_image=True)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1]["content"] == f"{IMAGE_TOKEN}\nWhat colour is the hexagon?"
    assert messages[3]["content"] == "How many crosses are there?"  # later turns untouched
    with pytest.raises(ValueError, match="user turn"):
        build_messages(config, [{"role": "assistant", "content": "x"}], has_image=True)


def test_chat_labels_are_the_answers_and_their_end_of_turn_only(lm_parts) -> None:
    config, tokenizer, vocab = lm_parts
    sample = tokenize_conversation(
        tokenizer,
        config,
        TURNS,
        has_image=True,
        image_token_id=vocab.image_token_id,
        num_image_tokens=5,
    )
    decoded = [tokenizer.decode(run) for run in _runs(sample.labels)]
    assert decoded == ["It is purple.<|im_end|>", "There are three.<|im_end|>"]
    positions = [i for i, t in enumerate(sample.input_ids) if t == vocab.image_token_id]
    assert len(positions) == 5 and positions == list(range(positions[0], positions[0] + 5))
    assert all(sample.labels[i] == IGNORE_INDEX for i in positions)
    assert sample.has_image and not sample.truncated


def test_plain_template_labels_the_caption_and_separator(lm_parts) -> None:
    config, tokenizer, vocab = lm_parts
    caption = [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "A star."}]
    sample = tokenize_conversation(
        tokenizer,
        config,
        caption,
        has_image=True,
        image_token_id=vocab.image_token_id,
        num_image_tokens=3,
        template="plain",
    )
    assert sample.input_ids[:3] == [vocab.image_token_id] * 3
    assert [tokenizer.decode(r) for r in _runs(sample.labels)] == ["A star.\n"]
    with pytest.raises(ValueError, match="exactly one assistant turn"):
        tokenize_conversation(
            tokenizer, config, TURNS, has_image=True, image_token_id=vocab.image_token_id,
            num_image_tokens=3, template="plain",
        )  # fmt: skip


def test_truncation_keeps_labels_aligned_but_never_cuts_the_image(lm_parts) -> None:
    config, tokenizer, vocab = lm_parts
    kwargs = {"has_image": True, "image_token_id": vocab.image_token_id, "num_image_tokens": 5}
    full = tokenize_conversation(tokenizer, config, TURNS, **kwargs)
    cut = tokenize_conversation(tokenizer, config, TURNS, max_length=len(full) - 4, **kwargs)
    assert cut.truncated and cut.input_ids == full.input_ids[: len(cut)]
    assert cut.labels == full.labels[: len(cut)]
    with pytest.raises(ValueError, match="cuts the image"):
        tokenize_conversation(tokenizer, config, TURNS, max_length=6, **kwargs)


def test_a_placeholder_may_never_be_a_target() -> None:
    with pytest.raises(ValueError, match="must not be a target"):
        expand_image_token([1, 9, 2], [IGNORE_INDEX, 9, 2], image_token_id=9, num_image_tokens=2)
    ids, labels = expand_image_token([1, 9, 2], [IGNORE_INDEX] * 2 + [2], 9, 3)
    assert ids == [1, 9, 9, 9, 2] and labels == [IGNORE_INDEX] * 4 + [2]


def test_the_inference_prompt_is_the_training_text_up_to_the_answer(lm_parts) -> None:
    config, tokenizer, vocab = lm_parts
    kwargs = {"has_image": True, "image_token_id": vocab.image_token_id, "num_image_tokens": 4}
    prompt = prompt_ids(tokenizer, config, TURNS[:1], **kwargs)
    sample = tokenize_conversation(tokenizer, config, TURNS[:2], **kwargs)
    assert sample.input_ids[: len(prompt)] == prompt
    assert sample.labels[len(prompt) - 1] == IGNORE_INDEX  # the answer starts right after
    assert sample.labels[len(prompt)] != IGNORE_INDEX


def test_stop_ids_hold_the_end_of_turn_marker(lm_parts) -> None:
    config, tokenizer, _ = lm_parts
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tokenizer, config)


def test_vicuna_template_labels_answers_and_eos() -> None:
    tokenizer = toy_tokenizer()
    tokenizer.chat_template = MLLMConfig(chat_template="vicuna_v1").template
    sample = tokenize_chat(tokenizer, [{"role": m["role"], "content": m["content"]} for m in TURNS])
    assert sample.text.startswith("A chat between a curious user")
    assert (
        "USER: <image>\nWhat colour is the hexagon? ASSISTANT: It is purple.<|im_end|>"
        in sample.text
    )
    assert [tokenizer.decode(r).strip() for r in _runs(sample.labels)] == [
        "It is purple.<|im_end|>",
        "There are three.<|im_end|>",
    ]
    prompt = tokenizer.apply_chat_template(TURNS[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("? ASSISTANT:")
