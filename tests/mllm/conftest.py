"""Tiny understanding models for tests: a random 2-block VQRAE and a random tiny LM.

The LM is a 2-layer Qwen3-shaped model over the in-process toy tokenizer (a few hundred tokens,
ChatML template), initialised with a wide spread (``initializer_range`` 0.3) so that its greedy
answers change with the image and the prompt: tests that compare answers then have teeth. Both
are written to session folders once and referenced by path, as a real model folder references
its tokenizer and LM.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vqrae
from vqrae.llm.testing import tiny_causal_lm, toy_tokenizer
from vqrae.mllm.config import MLLMConfig
from vqrae.mllm.model import MLLM


@pytest.fixture(scope="session")
def toy_lm_dir(tmp_path_factory) -> Path:
    """A saved random tiny LM (Qwen3 architecture) with the toy ChatML tokenizer."""
    path = tmp_path_factory.mktemp("toy-lm")
    tokenizer = toy_tokenizer()
    lm = tiny_causal_lm(len(tokenizer), initializer_range=0.3, seed=1)
    lm.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def plain_tokenizer_dir(tmp_path_factory) -> Path:
    """A tiny random VQRAE whose features skip the final norm (exportable to Llava)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vqrae-none") / "tiny"
    vqrae.create_model("vqrae-test-tiny", encoder_final_norm="none").save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_config(tiny_checkpoint, toy_lm_dir) -> MLLMConfig:
    """The tiny model's architecture: 4x4 tokens pooled to 2x2, mlp2x_gelu, toy LM."""
    return MLLMConfig(tokenizer=str(tiny_checkpoint), lm=str(toy_lm_dir), pool=2)


@pytest.fixture
def tiny_mllm(tiny_config) -> MLLM:
    """A fresh tiny understanding model on the CPU (eval mode)."""
    return MLLM.build(tiny_config, device="cpu", seed=0).eval()


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """A small shapes-world data set (12 scenes at 56 px, every layout)."""
    from vqrae.data.shapes import make_shapes_dataset

    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(
        root, 12, seed=0, size=56, mme_per_subtask=2, dpg_items=2, geneval_per_tag=1, hf=False
    )
    return root
