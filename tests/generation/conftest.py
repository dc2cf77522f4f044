"""Fixtures of the text-to-image tests: a tiny random VQRAE tokenizer (64 codes, 4x4 codes at
56 px), a toy text tokenizer, tiny generators over them, and a small shapes code data set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vqrae
from vqrae.generation.model import GeneratorConfig, ImageGenerator, tokenizer_fingerprint
from vqrae.llm.testing import tiny_causal_lm, toy_tokenizer
from vqrae.llm.vocab import expand_vocabulary

GRID = 4  # codes per side of the tiny tokenizer at 56 px
ARCHITECTURE = {
    "model_type": "qwen3",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


@pytest.fixture(scope="session")
def vqrae_dir(tmp_path_factory) -> Path:
    """A save_pretrained folder of the tiny random tokenizer (64 codes)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vqrae") / "tiny"
    vqrae.create_model("vqrae-test-tiny").save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def text_tokenizer_dir(tmp_path_factory) -> Path:
    """The toy byte-level BPE tokenizer, saved (a text_tokenizer a recipe can name)."""
    path = tmp_path_factory.mktemp("text") / "toy"
    toy_tokenizer().save_pretrained(path)
    return path


def make_generator(vqrae_dir: Path, seed: int = 0, max_length: int = 64) -> ImageGenerator:
    """A random tiny Qwen3 over the toy tokenizer, expanded by the tiny tokenizer's codes."""
    tokenizer = toy_tokenizer()
    lm = tiny_causal_lm(len(tokenizer), seed=seed)
    vocab = expand_vocabulary(lm, tokenizer, 64, seed=seed)
    model = vqrae.VQRAE.from_pretrained(vqrae_dir)
    config = GeneratorConfig(
        tokenizer=str(vqrae_dir),
        grid=(GRID, GRID),
        max_length=max_length,
        tokenizer_fingerprint=tokenizer_fingerprint(model),
    )
    generator = ImageGenerator(lm.eval(), tokenizer, vocab, config, source="test")
    generator.use_tokenizer(model)
    return generator


@pytest.fixture
def generator(vqrae_dir) -> ImageGenerator:
    return make_generator(vqrae_dir)


@pytest.fixture(scope="session")
def shapes_codes(tmp_path_factory, vqrae_dir) -> Path:
    """A code data set of 24 shapes-world scenes (3 shards) made by the tiny tokenizer."""
    from vqrae.generation.prepare import SourceSpec, prepare_codes

    out = tmp_path_factory.mktemp("codes") / "shapes"
    tokenizer = vqrae.VQRAE.from_pretrained(vqrae_dir)
    prepare_codes(
        SourceSpec(n=24), out, tokenizer, str(vqrae_dir), GRID, shard_size=10, progress=False
    )
    return out
