"""Load any Hugging Face causal language model and its tokenizer, under one runtime policy.

A language model is named in one of three ways, tried in this order by :func:`resolve_lm_path`:

1. a local folder (a ``save_pretrained`` directory: ``config.json``, weights, tokenizer files);
2. a catalogue entry of :mod:`vqrae.assets` whose kind is ``"causal-lm"`` (or
   ``"text-tokenizer"`` for :func:`load_tokenizer`), e.g. ``"smollm2-135m-instruct"``; a Hub id
   that a catalogue entry records (``"Qwen/Qwen3-0.6B"``) goes through that entry too, so the
   asset resolver's cache and offline sources apply;
3. any other Hugging Face Hub id (``owner/name``), handed to ``from_pretrained`` as is.

The runtime policy (:class:`LMPolicy`, built by :func:`lm_policy`) is decided here and only
here: float32 on CPU (bf16 matmul on the project's CPUs is far slower than fp32), bf16 weights
on CUDA; attention ``flash_attention_2`` on CUDA when the ``flash_attn`` package is installed,
else PyTorch's ``sdpa``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from vqrae import assets
from vqrae.utils.runtime import autocast, resolve_device

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "Attention",
    "LMPolicy",
    "LMPrecision",
    "causal_lm_from_config",
    "list_language_models",
    "lm_policy",
    "load_causal_lm",
    "load_tokenizer",
    "resolve_lm_path",
]

logger = logging.getLogger(__name__)

LMPrecision = Literal["32", "bf16", "bf16-mixed"]
"""How a language model's numbers are held:

* ``"32"``: float32 weights, no autocast (the CPU policy);
* ``"bf16"``: bfloat16 weights (the CUDA policy: inference, and DeepSpeed's ``bf16`` mode,
  which keeps its own fp32 master weights);
* ``"bf16-mixed"``: float32 weights under bf16 autocast (plain-PyTorch training on CUDA).
"""

Attention = Literal["sdpa", "eager", "flash_attention_2"]
"""A transformers ``attn_implementation``."""

_PRECISIONS: tuple[str, ...] = ("32", "bf16", "bf16-mixed")
_ATTENTIONS: tuple[str, ...] = ("sdpa", "eager", "flash_attention_2")
_LM_KINDS = ("causal-lm",)
_TOKENIZER_KINDS = ("causal-lm", "text-tokenizer")


@dataclass(frozen=True)
class LMPolicy:
    """Where and in which precision a language model runs, and its attention kernel.

    Build it with :func:`lm_policy`, which fills ``"auto"`` choices and validates the rest.

    Attributes:
        device: the torch device the model lives on.
        precision: see :data:`LMPrecision`.
        attn_implementation: see :data:`Attention`.
    """

    device: torch.device
    precision: LMPrecision
    attn_implementation: Attention

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights: bf16 for ``"bf16"``, float32 otherwise."""
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context to run forward passes in (bf16 autocast only for ``"bf16-mixed"``)."""
        if self.precision == "bf16-mixed":
            return autocast(self.device, "bf16-mixed")
        return contextlib.nullcontext()


def _flash_attn_installed() -> bool:
    """Whether the optional ``flash_attn`` package can be imported (it needs CUDA to build)."""
    return importlib.util.find_spec("flash_attn") is not None


def lm_policy(
    device: str | torch.device = "auto",
    precision: LMPrecision | Literal["auto"] = "auto",
    attn: Attention | Literal["auto"] = "auto",
) -> LMPolicy:
    """Decide the runtime policy of a language model.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU) or a torch device.
        precision: ``"auto"`` is ``"32"`` on CPU and ``"bf16"`` on CUDA; see :data:`LMPrecision`.
        attn: ``"auto"`` is ``"flash_attention_2"`` on CUDA with ``flash_attn`` installed,
            else ``"sdpa"``; see :data:`Attention`.

    Raises:
        ValueError: an unknown precision or attention name, or flash-attention 2 asked for
            where it cannot run (no CUDA, ``flash_attn`` not installed, float32 weights
            without autocast).
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" else "32"
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be 'auto' or one of {_PRECISIONS}, got {precision!r}")
    if precision != "32" and dev.type == "cpu":
        logger.warning("precision %r on CPU: bf16 matmul is far slower than fp32 here", precision)
    if attn == "auto":
        use_flash = dev.type == "cuda" and precision != "32" and _flash_attn_installed()
        attn = "flash_attention_2" if use_flash else "sdpa"
    if attn not in _ATTENTIONS:
        raise ValueError(f"attn must be 'auto' or one of {_ATTENTIONS}, got {attn!r}")
    if attn == "flash_attention_2":
        if dev.type != "cuda":
            raise ValueError(f"attn 'flash_attention_2' needs a CUDA device, got {dev}")
        if not _flash_attn_installed():
            raise ValueError(
                "attn 'flash_attention_2' needs the flash_attn package (pip install "
                "flash-attn); use attn='sdpa'"
            )
        if precision == "32":
            raise ValueError(
                "attn 'flash_attention_2' needs bf16: set precision 'bf16' or "
                "'bf16-mixed', or use attn='sdpa'"
            )
    return LMPolicy(device=dev, precision=precision, attn_implementation=attn)


# ----------------------------------------------------------------------------- names


def list_language_models(kinds: tuple[str, ...] = _LM_KINDS) -> list[str]:
    """Names of the catalogue entries of the given kinds (default: causal language models)."""
    return [spec.name for spec in assets.list_assets() if spec.kind in kinds]


def _looks_like_hub_id(name: str) -> bool:
    """``owner/name`` with no path syntax (a leading ``/``, ``.`` or ``~``, or more slashes)."""
    parts = name.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not name.startswith((".", "~"))
        and not any(c.isspace() for c in name)
    )


def resolve_lm_path(
    name_or_path: str | os.PathLike[str], kinds: tuple[str, ...] = _LM_KINDS
) -> Path | str:
    """Where ``from_pretrained`` should read a language model (or tokenizer) from.

    Args:
        name_or_path: a local folder, a catalogue entry's name, or a Hugging Face Hub id.
        kinds: the catalogue kinds accepted (``("causal-lm",)`` for models; tokenizers also
            accept ``"text-tokenizer"``).

    Returns:
        a local folder (a :class:`~pathlib.Path`), or a Hub id (a ``str``) for
        ``from_pretrained`` to download.

    Raises:
        ValueError: the name is none of the three, or names a catalogue entry of another kind;
            the message lists what was tried.
        vqrae.assets.AssetUnavailableError: a catalogue entry that no source could provide
            (no cache, no Hub, no offline source reachable).
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    known = {spec.name: spec for spec in assets.list_assets()}
    spec = known.get(text)
    if spec is None:  # a Hub id that a catalogue entry records goes through that entry
        spec = next((s for s in known.values() if s.hub_repo == text and s.kind in kinds), None)
    if spec is not None:
        if spec.kind not in kinds:
            raise ValueError(
                f"asset {spec.name!r} is of kind {spec.kind!r}, not one of {list(kinds)}; "
                f"language-model entries: {list_language_models(kinds)}"
            )
        return assets.resolve(spec.name)
    if _looks_like_hub_id(text) and not isinstance(name_or_path, Path):
        return text
    raise ValueError(
        f"cannot find a language model {text!r}: not an existing folder, not a catalogue "
        f"entry of kind {list(kinds)} (known: {list_language_models(kinds)}), and not a "
        "Hugging Face Hub id of the form 'owner/name'"
    )


# ----------------------------------------------------------------------------- loading


def load_tokenizer(name_or_path: str | os.PathLike[str], **kwargs: Any) -> PreTrainedTokenizerBase:
    """Load a tokenizer by folder, catalogue name (``causal-lm`` or ``text-tokenizer``) or Hub id.

    Extra keyword arguments go to ``AutoTokenizer.from_pretrained``.
    """
    from transformers import AutoTokenizer

    source = resolve_lm_path(name_or_path, kinds=_TOKENIZER_KINDS)
    return AutoTokenizer.from_pretrained(str(source), **kwargs)


def load_causal_lm(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "auto",
    precision: LMPrecision | Literal["auto"] = "auto",
    attn: Attention | Literal["auto"] = "auto",
    tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase | None = None,
    **kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal language model and its tokenizer under the policy of :func:`lm_policy`.

    Args:
        name_or_path: a folder, a ``causal-lm`` catalogue name, or a Hub id.
        device, precision, attn: the runtime policy (see :func:`lm_policy`).
        tokenizer: where the tokenizer comes from: ``None`` (the model's own folder), a name
            or path for :func:`load_tokenizer`, or a tokenizer object used as is.
        **kwargs: passed to ``AutoModelForCausalLM.from_pretrained``.

    Returns:
        ``(model, tokenizer)``; the model is in eval mode on ``policy.device``.
    """
    from transformers import AutoModelForCausalLM

    policy = lm_policy(device, precision, attn)
    source = resolve_lm_path(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(
        str(source), dtype=policy.dtype, attn_implementation=policy.attn_implementation, **kwargs
    )
    model = model.to(policy.device).eval()
    if tokenizer is None:
        tok = load_tokenizer(source) if isinstance(source, Path) else _hub_tokenizer(source)
    elif isinstance(tokenizer, (str, os.PathLike)):
        tok = load_tokenizer(tokenizer)
    else:
        tok = tokenizer
    return model, tok


def _hub_tokenizer(hub_id: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a Hub repository (a model loaded from the Hub carries its own)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hub_id)


def causal_lm_from_config(
    config: PretrainedConfig,
    *,
    device: str | torch.device = "auto",
    precision: LMPrecision | Literal["auto"] = "auto",
    attn: Attention | Literal["auto"] = "auto",
    seed: int | None = None,
) -> PreTrainedModel:
    """A randomly initialised causal LM for ``config``, under the same policy as loading.

    ``seed`` seeds the global torch generator before construction (the initialisers of
    transformers draw from it), so the same seed gives the same weights. Under a
    ``torch.device("meta")`` context no memory is allocated and ``device`` is ignored.
    """
    from transformers import AutoModelForCausalLM

    policy = lm_policy(device, precision, attn)
    if seed is not None:
        torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        config, dtype=policy.dtype, attn_implementation=policy.attn_implementation
    )
    if model.device.type == "meta":
        return model
    return model.to(policy.device)
