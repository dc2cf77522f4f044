"""Next-token prediction on the visual tokens only, over the whole vocabulary or its visual slice.

The language model runs over whole sequences (:class:`~vqrae.generation.sequences.
TrainingBatch`); only the hidden states that predict image codes reach a head: columns
``[image_start, image_start + N)`` of the left-padded batch, which predict codes ``0..N-1``
(the prompt is context, not a target, as the paper trains). Two heads:

* ``"full"`` (default, the paper's): the LM's own head, a softmax over the whole expanded
  vocabulary (text tokens compete with codes and lose, as they must at sampling);
* ``"visual"``: the softmax over the K code rows of the same head only (the shape of Janus's
  separate image head, sharing the LM's weights): the head costs K instead of V rows per
  token (Qwen3: 16k instead of 168k), and sampling, which draws only codes inside an image,
  sees exactly the distribution it was trained on.

The loss is the mean cross-entropy (float32) over the batch's B x N code targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vqrae.generation.model import decoder_of, head_parameters, head_weight
from vqrae.generation.sequences import TrainingBatch
from vqrae.llm.vocab import VisualVocab

__all__ = ["Head", "LossOutput", "VisualTokenObjective"]

Head = Literal["full", "visual"]


@dataclass
class LossOutput:
    """The loss and detached metrics of one micro-batch."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


class VisualTokenObjective(nn.Module):
    """Cross-entropy of a causal LM on the codes of left-padded text-to-image sequences.

    Args:
        lm: the expanded causal LM (plain or wrapped by peft).
        vocab: its visual vocabulary.
        head: ``"full"`` or ``"visual"`` (see the module docstring).
    """

    def __init__(self, lm: nn.Module, vocab: VisualVocab, head: Head = "full") -> None:
        super().__init__()
        if head not in ("full", "visual"):
            raise ValueError(f"head must be 'full' or 'visual', got {head!r}")
        self.lm = lm
        self.vocab = vocab
        self.head = head

    def external_parameters(self) -> list[nn.Parameter]:
        """Parameters this module's own forward reads from other modules (the sliced head's
        weight): DeepSpeed ZeRO-3 must gather them for it."""
        return head_parameters(self.lm) if self.head == "visual" else []

    def code_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., h) -> logits: over the vocabulary (``"full"``) or the K codes."""
        if self.head == "full":
            return self.lm.get_output_embeddings()(hidden)  # (..., V)
        return F.linear(hidden, head_weight(self.lm)[self.vocab.code_slice])  # (..., K)

    def forward(self, batch: TrainingBatch) -> LossOutput:
        body = decoder_of(self.lm)
        hidden = body(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
        ).last_hidden_state  # (B, T, h)
        n = batch.codes.shape[1]
        start = batch.image_start
        logits = self.code_logits(hidden[:, start : start + n])  # (B, N, V or K)
        targets = batch.codes  # (B, N) in [0, K)
        if self.head == "full":
            targets = targets + self.vocab.code_offset
        flat = logits.flatten(0, 1).float()  # (B*N, V or K)
        loss = F.cross_entropy(flat, targets.flatten())
        with torch.no_grad():
            accuracy = (flat.argmax(-1) == targets.flatten()).float().mean()
        return LossOutput(loss, {"loss": loss.detach(), "accuracy": accuracy})
