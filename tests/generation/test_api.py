"""generate(): images per prompt, seeds, truncation, the demo generator's absence."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from vqrae.generation import GeneratorUnavailableError, generate, load_generator
from vqrae.generation.api import generate_for_prompts
from vqrae.generation.sampler import SamplingConfig


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def test_generate_returns_n_images_per_prompt_seeded_by_index(generator) -> None:
    images = generate(["a red circle", "a star"], n=2, cfg=3.0, seed=5, model=generator)
    assert len(images) == 4 and all(im.size == (56, 56) and im.mode == "RGB" for im in images)
    again = generate(["a red circle"], n=2, cfg=3.0, seed=5, model=generator, batch_size=1)
    assert _same(again[0], images[0]) and _same(again[1], images[1])
    shifted = generate("a red circle", n=1, cfg=3.0, seed=6, model=generator)
    assert _same(shifted[0], images[1])  # image k uses seed + k
    assert not _same(images[0], images[1])


def test_over_long_prompts_are_cut_with_a_warning(generator, caplog) -> None:
    long = "a red circle and " * 40
    with caplog.at_level(logging.WARNING):
        (group,) = generate_for_prompts(generator, [long], n=1, sampling=SamplingConfig(cfg=2))
    assert group.truncated and "prompt cut to its first" in caplog.text
    with pytest.raises(ValueError, match="n must be"):
        generate_for_prompts(generator, ["x"], n=0)


def test_missing_generators_are_clear_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VQRAE_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.setenv("VQRAE_HOME", str(tmp_path / "home"))
    with pytest.raises(GeneratorUnavailableError, match="not shipped yet.*train-generator"):
        load_generator()
    with pytest.raises(GeneratorUnavailableError, match="no such generator folder"):
        load_generator(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeneratorUnavailableError, match="not a generator folder"):
        load_generator(tmp_path / "empty")
