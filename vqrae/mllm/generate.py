"""Answer generation: batched, left-padded, KV-cached decoding over spliced image embeddings.

The prompts of a batch are padded on the left (the pad positions are masked, and position ids
come from the mask, so every row sees the positions it would see alone); the first pass runs
the LM over the whole spliced prompt and keeps the key/value cache, then one token per row per
step. Only the last position's logits are computed (``logits_to_keep=1``). The ids the visual
vocabulary added (and the embedding table's padding rows) are never picked. Greedy by default;
``temperature > 0`` samples (with ``top_p``), from a seeded generator.

:class:`TextStream` turns a row's growing ids into text pieces as they come (the way
transformers' ``TextStreamer`` does: a piece is emitted once it does not end inside a multi-byte
character), for a chat that prints tokens as they are produced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from vqrae.llm.sampling import filter_logits, left_pad
from vqrae.mllm.language import stop_token_ids, visual_id_mask

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from vqrae.mllm.model import MLLM

__all__ = ["GenerationSettings", "TextStream", "generate"]

OnToken = Callable[[int, int], None]
"""Called as ``on_token(row, token_id)`` for every generated token that is not a stop token."""


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are decoded.

    Attributes:
        max_new_tokens: the most tokens generated per answer (LLaVA's model_vqa: 128).
        temperature: 0 is greedy (LLaVA's evaluations); above 0 samples.
        top_p: nucleus sampling mass (only when sampling).
        seed: the sampling generator's seed.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def _pick(logits: torch.Tensor, settings: GenerationSettings, generator: torch.Generator | None):
    """Next ids (B,) from logits (B, V) float32."""
    if settings.temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits / settings.temperature, None, settings.top_p).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: MLLM,
    prompts: Sequence[Sequence[int]],
    features: torch.Tensor | None,
    settings: GenerationSettings | None = None,
    on_token: OnToken | None = None,
) -> list[list[int]]:
    """Generate an answer for each prompt.

    Args:
        model: the understanding model (eval mode).
        prompts: token ids per row, image positions expanded (:func:`vqrae.mllm.prompts.prompt_ids`).
        features: (B, N, d) image features per row (``None`` when no row has an image; rows
            without one may hold zeros).
        settings: decoding settings (default greedy, 128 new tokens).
        on_token: streaming callback (see :data:`OnToken`).

    Returns:
        each row's generated ids, without the stop token that ended it.
    """
    settings = settings or GenerationSettings()
    device = model.device
    lm = model.lm
    stops = torch.tensor(stop_token_ids(model.tokenizer, model.config, lm), device=device)
    pad_id = int(model.tokenizer.pad_token_id)
    if not prompts or any(len(r) == 0 for r in prompts):
        raise ValueError("every prompt needs at least one token")
    ids, mask = left_pad(prompts, pad_id, device)
    position = (mask.cumsum(dim=1) - 1).clamp_min(0)  # (B, T)
    embeds = model.embed(ids, features.to(device) if features is not None else None)
    generator = None
    if settings.temperature > 0:
        generator = torch.Generator(device=device).manual_seed(settings.seed)

    out = lm(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=position,
        use_cache=True,
        logits_to_keep=1,
    )
    banned = visual_id_mask(model.vocab, out.logits.shape[-1], device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    answers: list[list[int]] = [[] for _ in prompts]
    next_position = position[:, -1:] + 1  # (B, 1)
    for _ in range(settings.max_new_tokens):
        logits = out.logits[:, -1].float().masked_fill(banned, float("-inf"))  # (B, V)
        token = _pick(logits, settings, generator)  # (B,)
        stopped = torch.isin(token, stops)
        for row in (~done & ~stopped).nonzero().flatten().tolist():
            answers[row].append(int(token[row]))
            if on_token is not None:
                on_token(row, int(token[row]))
        done |= stopped
        if bool(done.all()):
            break
        token = token.masked_fill(done, pad_id)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = lm(
            inputs_embeds=lm.get_input_embeddings()(token[:, None]),  # (B, 1, h)
            attention_mask=mask,
            position_ids=next_position,
            cache=out.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        next_position = next_position + 1
    return answers


class TextStream:
    """Text pieces of a growing token sequence, emitted once they are whole characters."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, emit: Callable[[str], None]) -> None:
        self.tokenizer = tokenizer
        self.emit = emit
        self.ids: list[int] = []
        self.printed = 0

    def push(self, token_id: int) -> None:
        """Add a token; emit the new text when it does not end in a partial character."""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        if len(text) > self.printed:
            self.emit(text[self.printed :])
            self.printed = len(text)

    def finish(self) -> None:
        """Emit what is left (a trailing partial character included) at the end of an answer."""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > self.printed:
            self.emit(text[self.printed :])
            self.printed = len(text)

    def text(self) -> str:
        """The whole decoded text so far."""
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)
