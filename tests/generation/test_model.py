"""The generator folder: config, grid sizes, fingerprints, save/load, heads."""

from __future__ import annotations

import json

import pytest
import torch

import vqrae
from vqrae.generation.model import (
    GENERATOR_FILE,
    GeneratorConfig,
    ImageGenerator,
    head_weight,
    image_size_for_grid,
    tokenizer_fingerprint,
)


def test_config_validates_and_round_trips() -> None:
    config = GeneratorConfig(tokenizer="vqrae-dinov2-s-demo", grid=(12, 12), max_length=200)
    assert config.num_image_tokens == 144 and config.max_prompt_tokens == 54
    assert GeneratorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="no room for a prompt"):
        GeneratorConfig(tokenizer="t", grid=(12, 12), max_length=146)
    with pytest.raises(ValueError, match="unknown keys"):
        GeneratorConfig.from_dict({**config.to_dict(), "colour": "red"})


def test_image_size_follows_the_grid(vqrae_dir) -> None:
    model = vqrae.VQRAE.from_pretrained(vqrae_dir)  # 14 px patches, 1 code per patch
    assert image_size_for_grid(model, 4) == 56 and image_size_for_grid(model, 3) == 42
    with pytest.raises(ValueError, match="multiple"):
        image_size_for_grid(model, 0)


def test_fingerprint_changes_with_the_weights(vqrae_dir) -> None:
    model = vqrae.VQRAE.from_pretrained(vqrae_dir)
    before = tokenizer_fingerprint(model)
    assert before == tokenizer_fingerprint(vqrae.VQRAE.from_pretrained(vqrae_dir))
    with torch.no_grad():
        model.decoder.head.weight[0, 0] += 1e-3
    assert tokenizer_fingerprint(model) != before


def test_folder_is_a_standard_causal_lm_and_round_trips(generator, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = generator.save_pretrained(tmp_path / "gen")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "visual_vocab.json"} <= names
    assert GENERATOR_FILE in names
    plain = AutoModelForCausalLM.from_pretrained(folder)  # the field's tools load it as is
    text = AutoTokenizer.from_pretrained(folder)
    assert text.convert_tokens_to_ids("<|visual_00063|>") == generator.vocab.code_end - 1
    loaded = ImageGenerator.from_pretrained(folder, device="cpu")
    assert loaded.config == generator.config and loaded.vocab == generator.vocab
    ids = torch.tensor([[3, 4, generator.vocab.boi_id, generator.vocab.code_offset]])
    with torch.no_grad():
        expected = generator.lm(ids).logits
        torch.testing.assert_close(loaded.lm(ids).logits, expected)
        torch.testing.assert_close(plain(ids).logits, expected)
    assert loaded.vqrae().config.codebook_size == 64  # the reference resolves and matches


def test_a_changed_tokenizer_is_refused(generator, tmp_path, vqrae_dir) -> None:
    other = vqrae.VQRAE.from_pretrained(vqrae_dir)
    with torch.no_grad():
        other.decoder.head.weight.mul_(2)
    other.save_pretrained(tmp_path / "retrained")
    config = GeneratorConfig(
        tokenizer=str(tmp_path / "retrained"),
        grid=generator.config.grid,
        max_length=generator.config.max_length,
        tokenizer_fingerprint=generator.config.tokenizer_fingerprint,
    )
    stale = ImageGenerator(generator.lm, generator.text_tokenizer, generator.vocab, config)
    with pytest.raises(ValueError, match="not the one this generator"):
        stale.vqrae()


def test_head_weight_is_the_effective_head_with_and_without_peft(generator) -> None:
    from peft import LoraConfig, get_peft_model

    lm, vocab = generator.lm, generator.vocab
    hidden = torch.randn(3, lm.config.hidden_size)
    with torch.no_grad():
        full = lm.get_output_embeddings()(hidden)
        torch.testing.assert_close(hidden @ head_weight(lm).T, full)
    rows = list(range(vocab.text_vocab_size, vocab.tokenizer_length))
    peft_config = LoraConfig(
        r=2, target_modules=["q_proj"], trainable_token_indices={"embed_tokens": rows}
    )
    wrapped = get_peft_model(lm, peft_config)
    delta = wrapped.get_output_embeddings().token_adapter.trainable_tokens_delta["default"]
    with torch.no_grad():
        delta.add_(0.5)  # trained code rows
        full = wrapped.get_output_embeddings()(hidden)
        torch.testing.assert_close(hidden @ head_weight(wrapped).T, full)
