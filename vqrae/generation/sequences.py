"""Token sequences of text-to-image: a prompt, begin-of-image, the codes, end-of-image.

One sequence is::

    [prompt text tokens] <|begin_of_image|> code_0 ... code_{H*W-1} <|end_of_image|>

with the codes in raster order (row by row), as token ids of :class:`vqrae.llm.VisualVocab`.
The prompt is the tokenizer's encoding of the caption with its own special tokens (a BOS where
the tokenizer adds one; none for Qwen3), cut to ``max_prompt_tokens``. The *dropped* prompt,
what classifier-free guidance trains and samples as "unconditional", is the encoding of the
empty caption: the tokenizer's specials alone (often nothing), so an unconditional row is
begin-of-image and the codes.

Batches are **left-padded**: every row ends where its image ends, so the code positions are
the same columns in every row (the last ``H*W + 2``), the training loss reads one slice, and
the sampler appends to every row at once. The pads are masked in the attention and the
positions count only real tokens (``cumsum(mask) - 1``), so a prompt gives the same hidden
states whatever it is batched with (a Janus bug was forgetting this).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from vqrae.llm.sampling import left_pad
from vqrae.llm.vocab import VisualVocab

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "EncodedPrompt",
    "PromptBatch",
    "TrainingBatch",
    "encode_prompt",
    "left_pad",
    "pad_token_id",
    "positions_from_mask",
    "prompt_batch",
    "training_batch",
]


@dataclass(frozen=True)
class EncodedPrompt:
    """A caption's token ids (without begin-of-image) and whether it was cut."""

    ids: list[int]
    truncated: bool


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> EncodedPrompt:
    """The caption's tokens with the tokenizer's special tokens, cut to the first ``max_tokens``.

    ``text == ""`` gives the dropped (unconditional) prompt.
    """
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    return EncodedPrompt(ids[:max_tokens], len(ids) > max_tokens)


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id written at padded positions (masked, so any valid id works): pad, else eos, else 0."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids (B, T) counting only unmasked tokens (0 for the pads before them)."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


@dataclass
class TrainingBatch:
    """A left-padded batch of whole sequences for next-token training.

    Attributes:
        input_ids: (B, T) prompt, begin-of-image, codes, end-of-image.
        attention_mask: (B, T), 0 on the left pads.
        position_ids: (B, T), from the mask.
        codes: (B, N) the image codes (indices in ``[0, K)``), the targets.
        image_start: column of begin-of-image; the hidden states of columns
            ``[image_start, image_start + N)`` predict ``codes[:, 0:N]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    codes: torch.Tensor
    image_start: int

    def to(self, device: torch.device | str) -> TrainingBatch:
        """The batch on ``device``."""
        return TrainingBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.codes.to(device),
            self.image_start,
        )

    @property
    def num_tokens(self) -> int:
        """Real (unpadded) tokens in the batch."""
        return int(self.attention_mask.sum())


def training_batch(
    prompts: Sequence[Sequence[int]], codes: torch.Tensor, vocab: VisualVocab, pad_id: int
) -> TrainingBatch:
    """Whole sequences from encoded prompts and their images' codes (B, N)."""
    if codes.dim() != 2 or codes.shape[0] != len(prompts):
        raise ValueError(f"codes must be ({len(prompts)}, N), got {tuple(codes.shape)}")
    image = vocab.image_sequence(codes)  # (B, N + 2)
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)  # (B, P)
    input_ids = torch.cat([prompt_ids, image], dim=1)  # (B, P + N + 2)
    mask = torch.cat([prompt_mask, torch.ones_like(image)], dim=1)
    return TrainingBatch(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions_from_mask(mask),
        codes=codes.long(),
        image_start=prompt_ids.shape[1],
    )


@dataclass
class PromptBatch:
    """Left-padded prompts ending in begin-of-image, ready for the first sampling step.

    Attributes:
        input_ids: (R, P) rows: prompt tokens then begin-of-image.
        attention_mask: (R, P), 0 on the left pads.
        position_ids: (R, P).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor


def prompt_batch(prompts: Sequence[Sequence[int]], vocab: VisualVocab, pad_id: int) -> PromptBatch:
    """Rows of prompt ids -> a left-padded batch, each row closed by begin-of-image."""
    ids, mask = left_pad([[*p, vocab.boi_id] for p in prompts], pad_id)
    return PromptBatch(ids, mask, positions_from_mask(mask))
