"""Seeds and phrasings per split, so evaluation never reuses what training saw.

Every random draw of the world comes from ``numpy.random.default_rng([seed, split, stream,
index])``: the split code and the stream code (scenes, GenEval prompts, MME, DPG, ...) are part
of the seed, so the train, validation and test streams of one base seed are disjoint random
sequences, and adding items to one artefact never shifts another. Captions of the evaluation
splits use the held-out phrasings by default.
"""

from __future__ import annotations

import numpy as np

from vqrae.data.shapes.captions import HELDOUT_PHRASINGS, TRAIN_PHRASINGS

__all__ = ["SPLITS", "STREAMS", "default_phrasings", "split_rng"]

SPLITS: dict[str, int] = {"train": 0, "validation": 1, "test": 2}
STREAMS: dict[str, int] = {"scene": 0, "geneval": 1, "mme": 2, "gqa": 3, "dpg": 4, "vqa": 5}


def split_rng(seed: int, split: str, stream: str, index: int) -> np.random.Generator:
    """The generator of item ``index`` of ``stream`` in ``split`` for base ``seed``."""
    if split not in SPLITS:
        raise ValueError(f"split: unknown {split!r}; expected one of {list(SPLITS)}")
    if stream not in STREAMS:
        raise ValueError(f"stream: unknown {stream!r}; expected one of {list(STREAMS)}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got {seed}, {index}")
    return np.random.default_rng([seed, SPLITS[split], STREAMS[stream], index])


def default_phrasings(split: str) -> tuple[str, ...]:
    """Training phrasings for ``train``, the held-out ones for the evaluation splits."""
    if split not in SPLITS:
        raise ValueError(f"split: unknown {split!r}; expected one of {list(SPLITS)}")
    return TRAIN_PHRASINGS if split == "train" else HELDOUT_PHRASINGS
