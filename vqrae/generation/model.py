"""The text-to-image model: a Hugging Face causal LM expanded by a VQRAE tokenizer's codes.

A trained generator is a folder that the field's tools load as they are::

    config.json, model.safetensors, generation_config.json   the causal LM (save_pretrained)
    tokenizer.json, tokenizer_config.json, ...               its tokenizer, with the visual tokens
    visual_vocab.json                                        the code <-> token-id map (vqrae.llm)
    generator.json                                           what generation needs besides: the
                                                             VQRAE tokenizer (name or folder) and
                                                             its fingerprint, the code grid, the
                                                             longest sequence

``AutoModelForCausalLM.from_pretrained(folder)`` gives the expanded LM; :meth:`ImageGenerator.
from_pretrained` gives it with everything needed to draw images, so generation needs only the
folder (and the referenced VQRAE tokenizer, resolved through :mod:`vqrae.assets`).

The *fingerprint* is a sha256 over the VQRAE tokenizer's weights: codes mean something only to
the tokenizer that made them, so a generator refuses to decode through a tokenizer that has
changed since it was trained (a retrained demo tokenizer under the same name, say).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vqrae.generation.sequences import EncodedPrompt, encode_prompt, pad_token_id
from vqrae.llm.vocab import VisualVocab, load_expanded_lm, save_expanded_lm
from vqrae.utils.files import atomic_write

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from vqrae.tokenizer.model import VQRAE

__all__ = [
    "GENERATOR_FILE",
    "GeneratorConfig",
    "ImageGenerator",
    "decoder_of",
    "head_parameters",
    "head_weight",
    "image_size_for_grid",
    "tokenizer_fingerprint",
]

GENERATOR_FILE = "generator.json"
_FORMAT = 1


@dataclass(frozen=True)
class GeneratorConfig:
    """What a generator folder records besides the language model.

    Attributes:
        tokenizer: the VQRAE tokenizer: a trained checkpoint's catalogue name
            (``vqrae-dinov2-s-demo``) or a ``save_pretrained`` folder.
        grid: (H, W) codes per image, raster order.
        max_length: the longest sequence trained (prompt + H*W + 2); prompts are cut to fit.
        tokenizer_fingerprint: :func:`tokenizer_fingerprint` of the tokenizer at training time
            (``None``: not checked).
    """

    tokenizer: str
    grid: tuple[int, int]
    max_length: int = 1536
    tokenizer_fingerprint: str | None = None

    def __post_init__(self) -> None:
        grid = tuple(int(g) for g in self.grid)
        object.__setattr__(self, "grid", grid)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"grid must be two positive sizes (H, W), got {self.grid}")
        if self.max_prompt_tokens < 1:
            raise ValueError(
                f"max_length {self.max_length} leaves no room for a prompt beside "
                f"{self.num_image_tokens} image codes and begin/end of image"
            )

    @property
    def num_image_tokens(self) -> int:
        """H * W."""
        return self.grid[0] * self.grid[1]

    @property
    def max_prompt_tokens(self) -> int:
        """Prompt tokens that fit: ``max_length - H*W - 2``."""
        return self.max_length - self.num_image_tokens - 2

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, **asdict(self), "grid": list(self.grid)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        data = dict(data)
        if data.pop("format", None) != _FORMAT:
            raise ValueError(f"unknown {GENERATOR_FILE} format")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{GENERATOR_FILE}: unknown keys {unknown}")
        return cls(**data)


def image_size_for_grid(model: VQRAE, grid: int) -> int:
    """The square image side whose code grid is ``grid`` x ``grid`` for this tokenizer.

    Raises:
        ValueError: no image size gives that grid (the message lists the nearest ones).
    """
    multiple = model.size_multiple
    codes_per_multiple = model.grid_for_size(multiple, multiple)[0]
    if grid < 1 or grid % codes_per_multiple:
        near = [codes_per_multiple * k for k in range(1, 9)]
        raise ValueError(
            f"grid {grid}: this tokenizer makes {codes_per_multiple} codes per "
            f"{multiple} px, so a grid must be a multiple of {codes_per_multiple} ({near}...)"
        )
    size = grid // codes_per_multiple * multiple
    assert model.grid_for_size(size, size) == (grid, grid)
    return size


def tokenizer_fingerprint(model: VQRAE) -> str:
    """sha256 of a VQRAE tokenizer's weights (float32 bytes, sorted names): what the codes mean."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        if key.endswith("usage_counts"):  # a statistic, not a weight
            continue
        digest.update(key.encode())
        data = tensor.detach().cpu()
        data = data.float() if data.is_floating_point() else data
        digest.update(data.contiguous().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- heads


def decoder_of(lm: nn.Module) -> nn.Module:
    """The transformer body of a causal LM (its last hidden state feeds the head)."""
    decoder = lm.get_decoder()
    if decoder is None:
        raise ValueError(f"{type(lm).__name__} has no decoder body (get_decoder() is None)")
    return decoder


def head_weight(lm: nn.Module) -> torch.Tensor:
    """The output head's weight (V, h) as used in the forward pass.

    A plain linear head (tied or not) gives its weight; under peft's trainable tokens the head
    is the base weight with the trained rows written in (``get_merged_weights``).
    """
    head = lm.get_output_embeddings()
    adapter = getattr(head, "token_adapter", None)
    if adapter is not None:
        return adapter.get_merged_weights(adapter.active_adapters)
    if not isinstance(head, nn.Linear) or head.bias is not None:
        raise ValueError(
            f"the output head of {type(lm).__name__} is {type(head).__name__}; the visual-slice "
            "head needs a bias-free linear layer on the last hidden state"
        )
    return head.weight


def head_parameters(lm: nn.Module) -> list[nn.Parameter]:
    """The parameters :func:`head_weight` reads (ZeRO-3 gathers them for a sliced head)."""
    head = lm.get_output_embeddings()
    adapter = getattr(head, "token_adapter", None)
    if adapter is not None:
        params = [adapter.base_layer.weight]
        params += list(adapter.trainable_tokens_delta.parameters())
        return params
    return [head.weight]


# ----------------------------------------------------------------------------- the model


@dataclass
class ImageGenerator:
    """A trained text-to-image generator: the expanded LM, its tokenizer and map, its config.

    Attributes:
        lm: the causal LM (eval mode), vocabulary expanded by the codes.
        text_tokenizer: its tokenizer (with the visual tokens).
        vocab: the code <-> token-id map.
        config: the tokenizer reference, grid and lengths.
        source: where it was loaded from (for messages and records).
    """

    lm: PreTrainedModel
    text_tokenizer: PreTrainedTokenizerBase
    vocab: VisualVocab
    config: GeneratorConfig
    source: str = ""
    _vqrae: Any = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @property
    def pad_id(self) -> int:
        return pad_token_id(self.text_tokenizer)

    def encode(self, text: str) -> EncodedPrompt:
        """A caption's prompt tokens, cut to fit the trained length."""
        return encode_prompt(self.text_tokenizer, text, self.config.max_prompt_tokens)

    def unconditional(self) -> list[int]:
        """The dropped prompt (the empty caption), as trained for guidance."""
        return self.encode("").ids

    def vqrae(self) -> VQRAE:
        """The VQRAE tokenizer that decodes this generator's codes (loaded once, checked).

        Raises:
            ValueError: the tokenizer's weights differ from those the generator was trained on.
        """
        if self._vqrae is None:
            from vqrae.tokenizer.model import VQRAE

            model = VQRAE.from_pretrained(self.config.tokenizer).to(self.device).eval()
            expected = self.config.tokenizer_fingerprint
            if expected is not None and tokenizer_fingerprint(model) != expected:
                raise ValueError(
                    f"the VQRAE tokenizer {self.config.tokenizer!r} is not the one this "
                    f"generator ({self.source}) was trained on (fingerprint differs): its codes "
                    "would decode to wrong images; retrain the generator on the current "
                    "tokenizer or point generator.json at the original one"
                )
            if model.config.codebook_size != self.vocab.num_codes:
                raise ValueError(
                    f"tokenizer {self.config.tokenizer!r} has {model.config.codebook_size} codes, "
                    f"the generator {self.vocab.num_codes}"
                )
            self._vqrae = model
        return self._vqrae

    def use_tokenizer(self, model: VQRAE) -> None:
        """Decode through ``model`` (already loaded) instead of loading the reference."""
        self._vqrae = model

    # ------------------------------------------------------------------ folders
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write the folder (see the module docstring)."""
        out = save_expanded_lm(directory, self.lm, self.text_tokenizer, self.vocab)
        text = json.dumps(self.config.to_dict(), indent=2) + "\n"
        atomic_write(out / GENERATOR_FILE, lambda tmp: tmp.write_text(text))
        for path in out.iterdir():  # transformers writes its weights 0600; a folder to share
            if path.is_file():  # (and ship as package data) is readable by all
                path.chmod(0o644)
        return out

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        device: str | torch.device = "auto",
        precision: str = "auto",
    ) -> ImageGenerator:
        """Load a generator folder.

        Raises:
            FileNotFoundError: the folder holds no ``generator.json`` (not a generator).
            ValueError: an inconsistent folder (vocabulary, grid).
        """
        folder = Path(directory)
        path = folder / GENERATOR_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {folder} is not a generator folder")
        config = GeneratorConfig.from_dict(json.loads(path.read_text()))
        lm, tokenizer, vocab = load_expanded_lm(folder, device=device, precision=precision)
        return cls(lm.eval(), tokenizer, vocab, config, source=str(folder))
