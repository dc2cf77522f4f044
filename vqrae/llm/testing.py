"""Language models for tests and demos: tiny random ones, the real offline ones, Qwen3-0.6B's shape.

* :func:`tiny_qwen3`: a random Qwen3-architecture model (hidden 64, 2 layers, 4 query / 2 key-value
  heads of 16) over the real Qwen3 tokenizer (asset ``qwen3-tokenizer``), built in well under
  a second; its embedding table has one row per tokenizer entry unless ``vocab_size`` says
  otherwise (:data:`QWEN3_VOCAB_SIZE` gives the padded table of the real Qwen3 models).
* :func:`smollm2`: the real offline chat model (asset ``smollm2-135m-instruct``).
* :func:`qwen3_0_6b_config` / :func:`qwen3_0_6b_on_meta`: the paper's generator, Qwen3-0.6B,
  at full shape on the meta device (no memory), with :func:`qwen3_parameter_count` to check it.
* :func:`toy_tokenizer` and :func:`tiny_causal_lm`: a small byte-level BPE tokenizer with a
  ChatML template, built in-process from a fixed text, and a random model of any vocabulary
  size, for tests that need no real vocabulary (and so no asset).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch

from vqrae.llm.loading import Attention, LMPrecision, causal_lm_from_config, load_causal_lm

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Qwen3Config

__all__ = [
    "QWEN3_0_6B",
    "QWEN3_TOKENIZER_ASSET",
    "QWEN3_VOCAB_SIZE",
    "SMOLLM2_ASSET",
    "TINY_QWEN3",
    "qwen3_0_6b_config",
    "qwen3_0_6b_on_meta",
    "qwen3_parameter_count",
    "qwen3_tokenizer",
    "smollm2",
    "tiny_causal_lm",
    "tiny_qwen3",
    "tiny_qwen3_config",
    "toy_tokenizer",
]

QWEN3_TOKENIZER_ASSET = "qwen3-tokenizer"
SMOLLM2_ASSET = "smollm2-135m-instruct"
QWEN3_VOCAB_SIZE = 151936  # the embedding rows of every Qwen3 model (151,669 tokens, padded)

# Qwen/Qwen3-0.6B's config.json (transformers 4.51): the paper's generator.
QWEN3_0_6B: dict[str, Any] = {
    "vocab_size": QWEN3_VOCAB_SIZE,
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
    "tie_word_embeddings": True,
    "attention_bias": False,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}

TINY_QWEN3: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
    "tie_word_embeddings": True,
}


# ----------------------------------------------------------------------------- Qwen3 shapes


def qwen3_0_6b_config(**overrides: Any) -> Qwen3Config:
    """Qwen3-0.6B's architecture as a ``transformers.Qwen3Config`` (overrides win)."""
    from transformers import Qwen3Config

    return Qwen3Config(**{**QWEN3_0_6B, **overrides})


def qwen3_0_6b_on_meta(**overrides: Any) -> PreTrainedModel:
    """Qwen3-0.6B built on the meta device: every shape, no memory, no weights."""
    with torch.device("meta"):
        return causal_lm_from_config(qwen3_0_6b_config(**overrides), device="cpu")


def qwen3_parameter_count(config: Qwen3Config) -> int:
    """The number of parameters a ``Qwen3ForCausalLM`` of ``config`` has, counted by hand.

    Per layer: q/k/v/o projections (no biases unless ``attention_bias``), the per-head RMS
    norms of queries and keys (``head_dim`` each), the SwiGLU MLP (gate, up, down) and two RMS
    norms; then the final norm, the embedding, and a separate head when untied.
    For Qwen3-0.6B: 155,582,464 embedding + 28 x 15,730,944 + 1,024 = 596,049,920.
    """
    h, d = config.hidden_size, config.head_dim
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    attention = h * q + 2 * h * kv + q * h + 2 * d
    if config.attention_bias:
        attention += q + 2 * kv + h
    mlp = 3 * h * config.intermediate_size
    layer = attention + mlp + 2 * h
    embedding = config.vocab_size * h
    head = 0 if config.tie_word_embeddings else config.vocab_size * h
    return embedding + config.num_hidden_layers * layer + h + head


def tiny_qwen3_config(vocab_size: int, **overrides: Any) -> Qwen3Config:
    """The tiny Qwen3 architecture of :data:`TINY_QWEN3` over ``vocab_size`` rows."""
    from transformers import Qwen3Config

    return Qwen3Config(**{**TINY_QWEN3, "vocab_size": vocab_size, **overrides})


# ----------------------------------------------------------------------------- real assets


def qwen3_tokenizer() -> PreTrainedTokenizerBase:
    """The real Qwen3 tokenizer (asset ``qwen3-tokenizer``; 151,669 tokens, Qwen3's template).

    Raises:
        vqrae.assets.AssetUnavailableError: the asset cannot be fetched here.
    """
    from vqrae.llm.loading import load_tokenizer

    return load_tokenizer(QWEN3_TOKENIZER_ASSET)


def tiny_qwen3(
    seed: int = 0,
    vocab_size: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    **overrides: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A tiny random Qwen3 model with the real Qwen3 tokenizer, on CPU in float32.

    Args:
        seed: the weights' seed (same seed, same weights).
        vocab_size: embedding rows; default ``len(tokenizer)`` (151,669);
            :data:`QWEN3_VOCAB_SIZE` mimics the real models' padded table.
        tokenizer: a tokenizer to use instead of loading ``qwen3-tokenizer``.
        **overrides: ``Qwen3Config`` fields over :data:`TINY_QWEN3`.
    """
    tok = tokenizer if tokenizer is not None else qwen3_tokenizer()
    special = _special_ids(tok)
    config = tiny_qwen3_config(vocab_size or len(tok), **{**special, **overrides})
    model = causal_lm_from_config(config, device="cpu", precision="32", seed=seed)
    return model.eval(), tok


def smollm2(
    device: str | torch.device = "cpu",
    precision: LMPrecision | Literal["auto"] = "auto",
    attn: Attention | Literal["auto"] = "auto",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The real offline chat LM, SmolLM2-135M-Instruct (asset ``smollm2-135m-instruct``).

    Raises:
        vqrae.assets.AssetUnavailableError: the asset cannot be fetched here.
    """
    return load_causal_lm(SMOLLM2_ASSET, device=device, precision=precision, attn=attn)


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """bos/eos/pad ids of a tokenizer, for a model config (only those it defines)."""
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return {k: v for k, v in ids.items() if v is not None}


# ----------------------------------------------------------------------------- asset-free

_TOY_TEXT = (
    "The quick brown fox jumps over the lazy dog. A red circle is left of a blue square. "
    "Two green triangles and one yellow star sit on a grey ground. What colour is the hexagon? "
    "It is purple. How many crosses are there? There are three. Yes. No. Hello, world! "
    "user assistant system image photo shape colour count position above below right left\n"
)
_TOY_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def toy_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerBase:
    """A small byte-level BPE tokenizer with a ChatML chat template, trained in-process.

    Deterministic (a fixed text), a few hundred tokens, ``<|im_end|>`` as end of sequence and
    ``<|endoftext|>`` as padding. For tests of the vocabulary and loading code that need no
    real vocabulary; chat-template tests use the real tokenizers.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(_TOY_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([_TOY_TEXT] * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=_CHATML_TEMPLATE,
    )


def tiny_causal_lm(
    vocab_size: int, *, tie_word_embeddings: bool = True, seed: int = 0, **overrides: Any
) -> PreTrainedModel:
    """A random tiny Qwen3-architecture model of ``vocab_size`` rows, CPU, float32, eval mode."""
    config = tiny_qwen3_config(vocab_size, tie_word_embeddings=tie_word_embeddings, **overrides)
    return causal_lm_from_config(config, device="cpu", precision="32", seed=seed).eval()
