"""The language-model half of an understanding model: loading, the image placeholder, LoRA.

The LM is loaded by :func:`vqrae.llm.load_causal_lm` (one precision and attention policy) and
its vocabulary expanded by :func:`vqrae.llm.expand_vocabulary`, which adds the image
placeholder ``<|image|>`` (with the begin/end-of-image tokens and the smallest code table the
map holds, one code: understanding needs no codes). The new rows are drawn by the seeded mean
rule, so a reference to the base model rebuilds them exactly; they are never targets, the
placeholder's embedding is replaced by image features, and generation masks their logits
(:func:`visual_id_mask`).

LoRA comes from ``peft`` (``target_modules: all-linear`` covers every linear layer of the LM
but its output head, as LLaVA's ``find_all_linear_names`` does). Its folder is peft's own
(``adapter_config.json`` + ``adapter_model.safetensors``), written without the embedding table:
the LoRA never touches it, and the expanded rows are rebuilt on load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from vqrae.llm import (
    VISUAL_VOCAB_FILE,
    Attention,
    LMPrecision,
    VisualVocab,
    expand_vocabulary,
    load_causal_lm,
    load_expanded_lm,
    tokenize_chat,
)
from vqrae.mllm.config import MLLMConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "LoRASettings",
    "add_lora",
    "load_language_model",
    "load_lora",
    "stop_token_ids",
    "visual_id_mask",
]

UNDERSTANDING_CODES = 1  # the image placeholder needs no code table; the map holds at least one


@dataclass
class LoRASettings:
    """A LoRA adapter on the language model (peft ``LoraConfig``).

    Attributes:
        r: rank (LLaVA-1.5's LoRA recipe: 128).
        alpha: scaling numerator (LLaVA-1.5: 256); the update is scaled by ``alpha / r``.
        dropout: dropout on the adapter's input (LLaVA-1.5: 0.05).
        target_modules: ``"all-linear"`` or a list of module names.
    """

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: str | list[str] = field(default="all-linear")

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0:
            raise ValueError(f"lora.r must be >= 1 and lora.alpha > 0, got {self.r}, {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")


def load_language_model(
    config: MLLMConfig,
    *,
    folder: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    precision: LMPrecision | Literal["auto"] = "auto",
    attn: Attention | Literal["auto"] = "auto",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, VisualVocab]:
    """The LM of ``config`` (or a fine-tuned one in ``folder``), its tokenizer and visual map.

    The chat template of ``config`` is installed, and a tokenizer without a padding token pads
    with its end-of-sequence token (padding positions are always masked).

    Raises:
        ValueError: the tokenizer has no chat template and ``config`` names none.
    """
    if folder is not None and (Path(folder) / VISUAL_VOCAB_FILE).is_file():
        lm, tokenizer, vocab = load_expanded_lm(
            folder, device=device, precision=precision, attn=attn
        )
    else:
        lm, tokenizer = load_causal_lm(
            folder if folder is not None else config.lm,
            device=device,
            precision=precision,
            attn=attn,
        )
        vocab = expand_vocabulary(lm, tokenizer, UNDERSTANDING_CODES)
    if config.template is not None:
        tokenizer.chat_template = config.template
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            f"the tokenizer of {config.lm!r} has no chat template: set chat_template (one of "
            "vqrae.mllm.config.CHAT_TEMPLATES, e.g. 'vicuna_v1', or a Jinja string)"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer, vocab


def visual_id_mask(vocab: VisualVocab, num_logits: int, device: torch.device) -> torch.Tensor:
    """(V,) bool: the logits generation must never pick (every id the expansion added, and the
    embedding table's padding rows)."""
    mask = torch.zeros(num_logits, dtype=torch.bool, device=device)
    mask[vocab.text_vocab_size :] = True
    return mask


def stop_token_ids(
    tokenizer: PreTrainedTokenizerBase, config: MLLMConfig, lm: PreTrainedModel | None = None
) -> list[int]:
    """Ids that end an answer: the end-of-sequence token(s) and the template's end-of-turn
    marker (found as the label after a probe answer: ``<|im_end|>`` for ChatML, ``</s>`` for
    Vicuna)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if lm is not None and lm.generation_config is not None:
        eos = lm.generation_config.eos_token_id
        ids |= {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    if config.system_prompt is not None:
        probe.insert(0, {"role": "system", "content": config.system_prompt})
    sample = tokenize_chat(tokenizer, probe, **config.template_kwargs)
    targets = [t for t in sample.labels if t >= 0]
    if targets and tokenizer.decode(targets[-1:], skip_special_tokens=True) == "":
        ids.add(int(targets[-1]))
    return sorted(ids)


# ----------------------------------------------------------------------------- LoRA


def add_lora(lm: PreTrainedModel, settings: LoRASettings) -> Any:
    """Wrap ``lm`` in a trainable peft LoRA (only the adapter's weights require gradients)."""
    from peft import LoraConfig, get_peft_model

    target: Any = settings.target_modules
    lora = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target,
        task_type="CAUSAL_LM",
        bias="none",
    )
    return get_peft_model(lm, lora)


def load_lora(lm: PreTrainedModel, folder: str | os.PathLike[str], trainable: bool) -> Any:
    """``lm`` with the LoRA adapter of ``folder`` (peft's layout) applied."""
    from peft import PeftModel

    return PeftModel.from_pretrained(lm, str(folder), is_trainable=trainable)
