"""Sequences: prompt encoding and truncation, left padding, positions, the training layout."""

from __future__ import annotations

import torch

from vqrae.generation.sequences import (
    encode_prompt,
    left_pad,
    positions_from_mask,
    prompt_batch,
    training_batch,
)
from vqrae.llm.testing import toy_tokenizer
from vqrae.llm.vocab import VisualVocab

VOCAB = VisualVocab(
    num_codes=8, code_offset=103, boi_id=100, eoi_id=101, image_token_id=102, text_vocab_size=100
)


def test_prompt_is_cut_to_its_budget_and_the_dropped_prompt_is_empty_text() -> None:
    tokenizer = toy_tokenizer()
    full = encode_prompt(tokenizer, "a red circle is left of a blue square", 100)
    assert not full.truncated and len(full.ids) > 4
    cut = encode_prompt(tokenizer, "a red circle is left of a blue square", 4)
    assert cut.truncated and cut.ids == full.ids[:4]
    assert encode_prompt(tokenizer, "", 10).ids == tokenizer("")["input_ids"]


def test_left_padding_masks_pads_and_positions_count_real_tokens() -> None:
    ids, mask = left_pad([[5, 6, 7], [9]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions_from_mask(mask).tolist() == [[0, 1, 2], [0, 0, 0]]
    ids, mask = left_pad([[], [4, 4]], pad_id=1)  # an empty (dropped) prompt is all padding
    assert mask.tolist() == [[0, 0], [1, 1]]


def test_training_batch_puts_every_image_in_the_same_columns() -> None:
    codes = torch.tensor([[0, 1, 2, 3], [7, 6, 5, 4]])  # (B, N)
    batch = training_batch([[11, 12, 13], [14]], codes, VOCAB, pad_id=0)
    assert batch.input_ids.shape == (2, 3 + 4 + 2)
    assert batch.image_start == 3
    assert batch.input_ids[:, 3].tolist() == [VOCAB.boi_id] * 2
    assert batch.input_ids[:, 4:8].tolist() == (codes + 103).tolist()
    assert batch.input_ids[:, -1].tolist() == [VOCAB.eoi_id] * 2
    assert batch.attention_mask[1].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1]
    assert batch.position_ids[1, 2:].tolist() == list(range(7))  # the pads do not count
    assert batch.num_tokens == 9 + 7


def test_prompt_batch_rows_end_in_begin_of_image() -> None:
    batch = prompt_batch([[1, 2], []], VOCAB, pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 100], [0, 0, 100]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 0, 0]]
