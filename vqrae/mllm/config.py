"""The architecture of an understanding model, saved as its folder's ``config.json``.

An understanding model is three parts named by reference, plus what joins them:

* the visual tokenizer (``tokenizer``): a trained VQRAE by name or folder, whose continuous
  features ``VQRAE.encode`` reads (frozen);
* the language model (``lm``): any Hugging Face causal LM by catalogue name, Hub id or folder
  (see :func:`vqrae.llm.load_causal_lm`), with its own chat template unless ``chat_template``
  names another;
* the projector (``projector``, LLaVA-1.5's ``mlp2x_gelu`` by default) from the feature width
  d to the LM width h, after an optional average pooling of the token grid to ``pool x pool``.

The weights a folder holds are those that were trained: the projector, and a LoRA adapter or a
whole fine-tuned LM when the LM was tuned (see :mod:`vqrae.mllm.model`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = ["CHAT_TEMPLATES", "EncoderWeights", "ImageAspect", "MLLMConfig", "parse_projector"]

ImageAspect = Literal["pad", "crop"]
#: Which weights the tokenizer's encoder reads with (see :attr:`MLLMConfig.encoder`).
EncoderWeights = Literal["trained", "pretrained"]
"""How an image becomes the tokenizer's square: ``"pad"`` (LLaVA-1.5's ``expand2square``: pad
the short side with the encoder's mean colour, then resize) or ``"crop"`` (resize the short
side, centre-crop: the tokenizer's evaluation crop)."""

_PROJECTOR = re.compile(r"^(linear|mlp(\d+)x_gelu)$")

# LLaVA's conv_vicuna_v1 (the Vicuna-7B/13B v1.5 tokenizers ship no chat template): a system
# line, then "USER: ... ASSISTANT: ...</s>" turns; the generation prompt ends in "ASSISTANT:".
_VICUNA_V1 = (
    "{{ bos_token if bos_token else '' }}"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + ' ' }}"
    "{% set turns = messages[1:] %}{% else %}"
    "{{ 'A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user\\'s questions. ' }}"
    "{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% if message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'ASSISTANT: ' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

CHAT_TEMPLATES: dict[str, str] = {"vicuna_v1": _VICUNA_V1}
"""Named chat templates for language models whose tokenizer has none (``chat_template``)."""


def parse_projector(kind: str) -> int:
    """The number of linear layers of a projector name: ``linear`` 1, ``mlp{N}x_gelu`` N.

    Raises:
        ValueError: not ``linear`` nor ``mlp{N}x_gelu`` with N >= 1.
    """
    match = _PROJECTOR.match(kind)
    if match is None or (match.group(2) is not None and int(match.group(2)) < 1):
        raise ValueError(f"projector must be 'linear' or 'mlp{{N}}x_gelu' (N >= 1), got {kind!r}")
    return 1 if match.group(2) is None else int(match.group(2))


@dataclass
class MLLMConfig:
    """An understanding model: tokenizer features -> pooling -> projector -> language model.

    Attributes:
        tokenizer: the trained VQRAE (catalogue name or ``save_pretrained`` folder) whose
            ``encode`` features the model reads; the encoder is frozen.
        encoder: the weights the tokenizer's encoder reads with: ``trained`` (the tokenizer's
            own, fine-tuned in its stage 2) or ``pretrained`` (the foundation model's own, as in
            the tokenizer's stage 1). The paper trains the understanding model on the
            pretrained encoder and then swaps the fine-tuned one in (plug and play).
        lm: the language model: a ``causal-lm`` catalogue name, a Hub id or a folder; for a
            model whose LM was fine-tuned as a whole, the base it started from.
        projector: ``mlp2x_gelu`` (LLaVA-1.5: Linear-GELU-Linear), ``mlp{N}x_gelu`` or
            ``linear``.
        pool: average-pool the (h, w) token grid to ``pool x pool`` tokens before the
            projector (``None``: every token; the demo tokenizer gives 48 x 48 = 2304 at 224 px).
        image_aspect: see :data:`ImageAspect`.
        chat_template: ``None`` (the LM's own template), a name in :data:`CHAT_TEMPLATES`, or a
            Jinja template string.
        system_prompt: a system message put first in every conversation (``None``: whatever the
            template does without one, e.g. SmolLM2's default system line).
        template_kwargs: extra variables for the chat template (Qwen3: ``enable_thinking:
            false``).
        feature_dim: the tokenizer's feature width d (filled when the model is built).
        hidden_size: the LM's width h (filled when the model is built).
    """

    tokenizer: str = "vqrae-dinov2-s-demo"
    encoder: EncoderWeights = "trained"
    lm: str = "smollm2-135m-instruct"
    projector: str = "mlp2x_gelu"
    pool: int | None = None
    image_aspect: ImageAspect = "pad"
    chat_template: str | None = None
    system_prompt: str | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    feature_dim: int | None = None
    hidden_size: int | None = None

    def __post_init__(self) -> None:
        parse_projector(self.projector)
        if not self.tokenizer:
            raise ValueError("tokenizer: name a trained VQRAE (catalogue name or folder)")
        if self.encoder not in ("trained", "pretrained"):
            raise ValueError(f"encoder must be 'trained' or 'pretrained', got {self.encoder!r}")
        if not self.lm:
            raise ValueError("lm: name a causal language model (catalogue name, Hub id, folder)")
        if self.pool is not None and self.pool < 1:
            raise ValueError(f"pool must be >= 1 or null, got {self.pool}")
        if self.image_aspect not in ("pad", "crop"):
            raise ValueError(f"image_aspect must be 'pad' or 'crop', got {self.image_aspect!r}")
        for name in ("feature_dim", "hidden_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {value}")

    @property
    def template(self) -> str | None:
        """The Jinja chat template to install (``None``: keep the tokenizer's own)."""
        if self.chat_template is None:
            return None
        return CHAT_TEMPLATES.get(self.chat_template, self.chat_template)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MLLMConfig:
        """Inverse of :meth:`to_dict`; unknown keys are errors naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown understanding-model config keys: {', '.join(unknown)}")
        return cls(**data)
