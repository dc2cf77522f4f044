"""A DPG-Bench judge answered by an understanding model (:class:`vqrae.eval.dpg.Judge`).

DPG-Bench asks every question of an item about each of the four tiles of a generated grid; a
"yes" scores 1. The judge asks the model the question with ``Please answer yes or no.`` appended
(MME's instruction; DPG's own judge, mPLUG, answers single words), greedily, in a few tokens.
The features of the last tile are kept, since the scorer asks all of a tile's questions in a
row.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from PIL import Image

from vqrae.data.shapes.mme_layout import YES_NO_SUFFIX
from vqrae.eval.dpg import DPGReport, eval_dpg
from vqrae.mllm.generate import GenerationSettings, generate
from vqrae.mllm.model import MLLM
from vqrae.mllm.prompts import prompt_ids

__all__ = ["MLLMJudge", "run_dpg"]


class MLLMJudge:
    """Yes/no answers from an understanding model.

    Args:
        model: the understanding model (eval mode).
        suffix: appended to each question (after a space).
        max_new_tokens: the answer's length bound.
    """

    def __init__(self, model: MLLM, suffix: str = YES_NO_SUFFIX, max_new_tokens: int = 8) -> None:
        self.model = model
        self.suffix = suffix
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens)
        self._last: tuple[str, torch.Tensor] | None = None
        self.asked = 0

    def _features(self, image: Image.Image) -> torch.Tensor:
        rgb = image.convert("RGB")
        key = hashlib.sha1(rgb.tobytes() + repr(rgb.size).encode()).hexdigest()
        if self._last is None or self._last[0] != key:
            tensor = self.model.vision.preprocess(rgb)[None].to(self.model.device)
            self._last = (key, self.model.vision(tensor))  # (1, N, d)
        return self._last[1]

    def answer(self, image: Image.Image, question: str) -> str:
        """The model's reply to ``question`` about ``image``."""
        text = f"{question} {self.suffix}".strip() if self.suffix else question
        ids = prompt_ids(
            self.model.tokenizer,
            self.model.config,
            [{"role": "user", "content": text}],
            has_image=True,
            image_token_id=self.model.image_token_id,
            num_image_tokens=self.model.num_image_tokens,
        )
        (reply,) = generate(self.model, [ids], self._features(image), self.settings)
        self.asked += 1
        return self.model.tokenizer.decode(reply, skip_special_tokens=True).strip()


def run_dpg(
    model: MLLM,
    images: str | os.PathLike[str],
    csv_path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    tiles: int = 4,
) -> DPGReport:
    """Score a DPG-Bench image folder with this model as the judge (``out``: a JSON file)."""
    return eval_dpg(Path(images), csv_path, MLLMJudge(model), out=out, tiles=tiles)
