"""The same guidance for transformers' ``generate``: a logits processor (the baseline the
sampler is measured against, and a way to sample a generator folder with stock tools).

``model.generate`` is given the conditional rows then the unconditional ones (2B rows, left
padded, ending in begin-of-image). :class:`GuidedCodesProcessor` computes
``u + s (c - u)`` over the code slice, puts -inf on every other token (inside an image only
codes can be drawn), and writes the guided scores to both halves, so greedy decoding (or any
draw that is the same for equal rows) feeds the same code to a prompt's two rows.
"""

from __future__ import annotations

import torch

from vqrae.llm.vocab import VisualVocab

__all__ = ["GuidedCodesProcessor"]


class GuidedCodesProcessor:
    """A transformers ``LogitsProcessor`` for classifier-free guidance over the visual codes.

    Args:
        vocab: the generator's visual vocabulary.
        cfg: the guidance scale ``s``.
        guided: whether the batch holds [conditional; unconditional] halves (``False``: no
            guidance, every row stands alone).
    """

    def __init__(self, vocab: VisualVocab, cfg: float, guided: bool = True) -> None:
        self.code_slice = vocab.code_slice
        self.cfg = cfg
        self.guided = guided

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        codes = scores[:, self.code_slice].float()  # (R, K)
        if self.guided:
            half = scores.shape[0] // 2
            cond, uncond = codes[:half], codes[half:]
            guided = uncond + self.cfg * (cond - uncond)  # (B, K)
            codes = torch.cat([guided, guided])
        out = torch.full_like(scores, float("-inf"))
        out[:, self.code_slice] = codes.to(scores.dtype)
        return out
