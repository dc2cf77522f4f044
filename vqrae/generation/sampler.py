"""Sampling image codes from an expanded language model: KV cache, guidance, per-image seeds.

One call draws the H*W codes of B images in lockstep:

1. **prefill**: the rows (the B prompts, then B copies of the unconditional prompt when guided)
   are left-padded and run once; their keys and values go into a KV cache preallocated for the
   whole image (``"static"``, as LlamaGen; ``"dynamic"`` grows it);
2. **each step** reads only the last hidden state of every row and multiplies it with the head's
   K code rows (inside an image only visual tokens can be drawn, so the V - K other logits are
   never computed: on Qwen3 with 16k codes the head shrinks ten-fold);
3. **classifier-free guidance** combines the conditional and unconditional halves of the batch:
   ``logits = u + s (c - u)`` (LlamaGen; ``s = 1`` is no guidance and runs no unconditional
   rows, ``s = 0`` is unconditional); the drawn code is fed to both halves;
4. **the draw**: greedy at temperature 0, else temperature, top-k and top-p (nucleus) on the
   guided logits, and one uniform number per image and step from that image's own generator
   (seeded by its seed) picks the code by inverse CDF, so the same seed gives the same image
   whatever else is in the batch (up to float reassociation in the batched matmuls).

The pads of a left-padded batch are masked and positions count real tokens only
(:mod:`vqrae.generation.sequences`), so a prompt's rows are the same in any batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vqrae.generation.model import decoder_of, head_weight
from vqrae.generation.sequences import prompt_batch
from vqrae.llm.sampling import filter_logits
from vqrae.llm.vocab import VisualVocab

__all__ = ["DEFAULT_CFG", "CacheKind", "SamplingConfig", "draw", "filter_logits", "sample_codes"]

CacheKind = Literal["static", "dynamic"]
DEFAULT_CFG = 4.0  # LlamaGen samples at 4-7.5, Janus-Pro at 5


@dataclass(frozen=True)
class SamplingConfig:
    """How codes are drawn.

    Attributes:
        cfg: guidance scale ``s`` (>= 0): 1 is none, 0 unconditional; LlamaGen uses 4-7.5.
        temperature: 0 for greedy decoding, else the softmax temperature (> 0).
        top_k: keep the ``top_k`` most likely codes (``None`` or 0: all).
        top_p: keep the smallest set of codes whose probability reaches ``top_p`` (1: all).
        cache: ``"static"`` (preallocated for the whole image) or ``"dynamic"``.
    """

    cfg: float = DEFAULT_CFG
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    cache: CacheKind = "static"

    def __post_init__(self) -> None:
        if not self.cfg >= 0:
            raise ValueError(f"cfg (the guidance scale) must be >= 0, got {self.cfg}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.cache not in ("static", "dynamic"):
            raise ValueError(f"cache must be 'static' or 'dynamic', got {self.cache!r}")

    @property
    def needs_conditional(self) -> bool:
        return self.cfg != 0

    @property
    def needs_unconditional(self) -> bool:
        return self.cfg != 1


def draw(
    logits: torch.Tensor, config: SamplingConfig, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """One code per row of guided logits (B, K): greedy, or an inverse-CDF draw with one uniform
    number from each row's generator."""
    if config.temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits.float() / config.temperature, config.top_k, config.top_p)
    probs = probs.softmax(-1)  # (B, K)
    cdf = probs.cumsum(-1)
    u = torch.stack([torch.rand((), generator=g) for g in generators]).to(cdf.device)
    u = (u * cdf[:, -1]).unsqueeze(-1)  # (B, 1): within the mass actually summed
    return torch.searchsorted(cdf, u).squeeze(-1).clamp_max(cdf.shape[-1] - 1)


def _new_cache(lm: nn.Module, kind: CacheKind, length: int):
    from transformers import DynamicCache, StaticCache

    if kind == "static":
        return StaticCache(config=lm.config, max_cache_len=length)
    return DynamicCache(config=lm.config)


@torch.inference_mode()
def sample_codes(
    lm: nn.Module,
    vocab: VisualVocab,
    prompts: Sequence[Sequence[int]],
    unconditional: Sequence[int],
    num_tokens: int,
    config: SamplingConfig,
    seeds: Sequence[int],
    pad_id: int,
) -> torch.Tensor:
    """Draw ``num_tokens`` codes for each prompt.

    Args:
        lm: the expanded causal LM (eval mode).
        vocab: its visual vocabulary.
        prompts: B rows of prompt token ids (without begin-of-image).
        unconditional: the dropped prompt's ids (see :meth:`ImageGenerator.unconditional`).
        num_tokens: H*W codes per image.
        config: guidance and the draw.
        seeds: one seed per image (B).
        pad_id: the id at padded positions.

    Returns:
        codes (B, num_tokens), int64 in ``[0, K)``, raster order.
    """
    if len(seeds) != len(prompts) or not prompts:
        raise ValueError(f"need one seed per prompt, got {len(seeds)} for {len(prompts)}")
    b = len(prompts)
    rows: list[Sequence[int]] = []
    if config.needs_conditional:
        rows += list(prompts)
    if config.needs_unconditional:
        rows += [unconditional] * b
    both = len(rows) == 2 * b
    device = next(lm.parameters()).device
    batch = prompt_batch(rows, vocab, pad_id)
    ids = batch.input_ids.to(device)  # (R, P)
    prompt_len = ids.shape[1]
    mask = torch.ones(len(rows), prompt_len + num_tokens, dtype=torch.long, device=device)
    mask[:, :prompt_len] = batch.attention_mask.to(device)  # (R, P + N): pads masked
    position = batch.position_ids.to(device)  # (R, P)
    body = decoder_of(lm)
    weight = head_weight(lm)[vocab.code_slice]  # (K, h)
    cache = _new_cache(lm, config.cache, prompt_len + num_tokens)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    hidden = body(
        input_ids=ids, attention_mask=mask[:, :prompt_len], position_ids=position,
        cache=cache, use_cache=True,
    ).last_hidden_state[:, -1]  # fmt: skip  # (R, h)
    position = position[:, -1:]  # (R, 1)
    codes = torch.empty(b, num_tokens, dtype=torch.long, device=device)
    for t in range(num_tokens):
        logits = (hidden @ weight.T).float()  # (R, K)
        if both:
            cond, uncond = logits[:b], logits[b:]
            logits = uncond + config.cfg * (cond - uncond)  # (B, K)
        code = draw(logits, config, generators)  # (B,)
        codes[:, t] = code
        if t == num_tokens - 1:
            break
        step = code + vocab.code_offset
        step = torch.cat([step, step]) if both else step  # the same code to both halves
        position = position + 1
        seen = mask if config.cache == "static" else mask[:, : prompt_len + t + 1]
        hidden = body(
            input_ids=step[:, None], attention_mask=seen, position_ids=position,
            cache=cache, use_cache=True,
        ).last_hidden_state[:, -1]  # fmt: skip
    return codes
