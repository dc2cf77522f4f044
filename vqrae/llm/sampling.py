"""Decoding primitives both language-model paths share: left-padded batches of prompts and the
top-k / top-p (nucleus) filter of a draw."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["filter_logits", "left_pad"]


def left_pad(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids -> ``(ids (B, T), mask (B, T))``, left-padded to the longest row; an empty
    row (a dropped prompt) is all padding."""
    if not rows:
        raise ValueError("left_pad needs at least one row")
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        if len(row):
            ids[i, length - len(row) :] = torch.as_tensor(list(row), dtype=torch.long)
            mask[i, length - len(row) :] = 1
    return ids.to(device), mask.to(device)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float) -> torch.Tensor:
    """Logits (B, V) with everything outside the top-k and the top-p nucleus at -inf (the most
    likely token is always kept)."""
    out = logits
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[:, -1:]  # (B, 1)
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
        drop = before >= top_p
        out = out.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return out
