"""The understanding model: VQRAE features -> pooling -> projector -> a Hugging Face causal LM.

Inputs are token ids whose image positions hold the placeholder id, ``num_image_tokens`` of them
per image (:mod:`vqrae.mllm.prompts`); :meth:`MLLM.embed` replaces those positions by the
projected features, row by row, and the LM runs on the embeddings. :meth:`MLLM.forward` returns
the last hidden states and, given labels, the summed cross-entropy over the labelled positions
only (the output head runs on those positions alone: with a 49k-151k vocabulary the head is a
large share of a small model's compute), so a trainer can normalise by the number of targets of
a whole global batch, however it is split over processes and micro-batches.

A model is a folder::

    config.json             {"model_type": "vqrae-mllm", "config": MLLMConfig, "lm_weights":
                             "reference" | "lora" | "full", "visual_vocab": {...}}
    projector.safetensors   the projector (``layers.*``)
    adapter/                a peft LoRA adapter (when ``lm_weights`` is "lora")
    lm/                     the fine-tuned LM, a Hugging Face folder (when "full")

The tokenizer and, unless fine-tuned as a whole, the LM are references (catalogue names, Hub
ids or folders), so a model with a frozen or LoRA-tuned LM is a few megabytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from vqrae.llm import IGNORE_INDEX, Attention, LMPrecision, VisualVocab, save_expanded_lm
from vqrae.mllm.config import EncoderWeights, MLLMConfig
from vqrae.mllm.language import LoRASettings, add_lora, load_language_model, load_lora
from vqrae.mllm.projector import Projector
from vqrae.mllm.vision import VisionFeatures
from vqrae.tokenizer.encoders import get_encoder_spec
from vqrae.tokenizer.model import VQRAE, load_pretrained_encoder
from vqrae.utils.files import atomic_write

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "LMWeights",
    "MLLM",
    "MLLMOutput",
    "ProjectedLM",
    "DEMO_MLLM",
    "find_mllm",
    "is_mllm_folder",
    "load_tokenizer",
    "resolve_tokenizer_ref",
]

MODEL_TYPE = "vqrae-mllm"
CONFIG_NAME = "config.json"
PROJECTOR_NAME = "projector.safetensors"
ADAPTER_DIR = "adapter"
LM_DIR = "lm"
_FORMAT = 1

LMWeights = Literal["reference", "lora", "full"]
"""What a model holds of its LM: nothing (``reference``: frozen), a LoRA adapter, or all of it."""


@dataclass
class MLLMOutput:
    """What :meth:`MLLM.forward` returns.

    Attributes:
        hidden: the LM's last hidden states (B, T, h).
        loss_sum: summed next-token cross-entropy over the labelled positions (a scalar, float32;
            ``None`` without labels).
        num_targets: how many positions were labelled (``None`` without labels).
    """

    hidden: torch.Tensor
    loss_sum: torch.Tensor | None = None
    num_targets: int | None = None


#: The shipped demo model, the default of ``vqrae chat`` and ``vqrae answer``.
DEMO_MLLM = "vqrae-mllm-demo"
DEMO_RECIPE = "configs/mllm/cpu-demo.yaml"


def find_mllm(model: str | os.PathLike[str] | None = None) -> Path:
    """The folder of an understanding model given as a folder or a catalogue name (default
    :data:`DEMO_MLLM`), found without loading it.

    Raises:
        ValueError: a missing folder, an unknown name, or the demo model when this
            installation does not ship it (the message says how to train one).
    """
    name = os.fspath(model) if model is not None else DEMO_MLLM
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    from vqrae import assets

    if name not in {s.name for s in assets.list_assets() if s.kind == "mllm"}:
        raise ValueError(
            f"--model {name}: no such model folder, and not a catalogue name (the demo model "
            f"is {DEMO_MLLM!r})"
        )
    try:
        return assets.resolve(name)
    except assets.AssetError:
        raise ValueError(
            f"the understanding model {name!r} is not in this installation: train one with "
            f"`vqrae train-mllm --config {DEMO_RECIPE} --out runs/mllm-s1 --stage 1`, then "
            "stage 2 (see the recipe), and pass --model runs/mllm-s2/model"
        ) from None


def is_mllm_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder written by :meth:`MLLM.save_pretrained`."""
    config = Path(path) / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == MODEL_TYPE
    except json.JSONDecodeError:
        return False


def resolve_tokenizer_ref(reference: str, base: Path | None) -> str:
    """A tokenizer reference as ``VQRAE.from_pretrained`` takes it: a relative folder is read
    relative to the model folder ``base`` when it exists there, else as given."""
    if base is not None and not Path(reference).is_absolute() and (base / reference).is_dir():
        return str(base / reference)
    return reference


def load_tokenizer(
    reference: str, encoder: EncoderWeights = "trained", base: Path | None = None
) -> VQRAE:
    """The VQRAE of a model's ``tokenizer`` reference, its encoder reading with the ``trained``
    weights it holds or the foundation model's ``pretrained`` ones (its stage-1 encoder)."""
    vqrae = VQRAE.from_pretrained(resolve_tokenizer_ref(reference, base))
    if encoder == "pretrained":
        if get_encoder_spec(vqrae.config.encoder).asset is None:
            raise ValueError(
                f"encoder: pretrained needs a foundation-model encoder with pretrained weights; "
                f"{reference!r} uses {vqrae.config.encoder!r}, which has none"
            )
        vqrae.encoder.load_state_dict(load_pretrained_encoder(vqrae.config).state_dict())
    return vqrae


class ProjectedLM(nn.Module):
    """The half of the model that trains: the projector and the language model.

    A trainer wraps this module alone (DDP, DeepSpeed): the frozen visual half stays outside,
    unpartitioned, and its features come in as inputs (computed, or read from a cache).

    Args:
        projector: features (..., d) -> embeddings (..., h).
        lm: the causal LM (a peft model while a LoRA adapter is attached).
        image_token_id: the placeholder id of image positions.
        num_image_tokens: placeholders per image.
    """

    def __init__(
        self, projector: Projector, lm: PreTrainedModel, image_token_id: int, num_image_tokens: int
    ) -> None:
        super().__init__()
        self.projector = projector
        self.lm = lm
        self.image_token_id = image_token_id
        self.num_image_tokens = num_image_tokens

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, N, d) -> embeddings (B, N, h) in the LM's dtype."""
        weight = self.projector.linears[0].weight
        embeds = self.projector(features.to(weight.device, weight.dtype))
        return embeds.to(self.lm.get_input_embeddings().weight.dtype)

    def embed(self, input_ids: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (B, T, h) with each image-bearing row's placeholders replaced by its
        projected features.

        Args:
            input_ids: (B, T); a row with an image holds exactly ``num_image_tokens``
                placeholders, one without holds none.
            features: (B, N, d), one per row (rows without an image may hold anything, e.g.
                zeros: they are projected, so every process runs the projector, but unused).

        Raises:
            ValueError: a row's placeholder count is neither 0 nor ``num_image_tokens``, or
                rows carry images and no features are given.
        """
        embeds = self.lm.get_input_embeddings()(input_ids)  # (B, T, h)
        placeholders = input_ids == self.image_token_id  # (B, T)
        counts = placeholders.sum(dim=1)
        n = self.num_image_tokens
        if bool(((counts != 0) & (counts != n)).any()):
            raise ValueError(f"rows hold {counts.tolist()} image placeholders; expected 0 or {n}")
        if features is None:
            if bool(counts.any()):
                raise ValueError("the inputs hold image placeholders but no features were given")
            return embeds
        if features.shape[0] != input_ids.shape[0] or features.shape[1] != n:
            raise ValueError(
                f"features {tuple(features.shape)} do not match {input_ids.shape[0]} rows of "
                f"{n} image tokens"
            )
        projected = self.project(features)  # (B, N, h)
        rows = counts > 0  # (B,)
        if not bool(rows.any()):  # keep the projector in the graph (DDP, ZeRO expect it)
            return embeds + 0.0 * projected.sum()
        return embeds.masked_scatter(placeholders.unsqueeze(-1), projected[rows])

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> MLLMOutput:
        """Run the LM on the spliced embeddings.

        Args:
            input_ids: (B, T) token ids with image placeholders.
            attention_mask: (B, T), 1 for real tokens, 0 for padding.
            features: (B, N, d) image features (see :meth:`embed`).
            labels: (B, T) unshifted targets (``IGNORE_INDEX`` where none); when given, the
                summed loss over the labelled positions is computed.
            position_ids: (B, T); default from the mask (``cumsum - 1``), so left padding works.
        """
        embeds = self.embed(input_ids, features)
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp_min(0)
        decoder = self.lm.get_decoder()
        hidden = decoder(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state  # (B, T, h)
        if labels is None:
            return MLLMOutput(hidden=hidden)
        targets = labels[:, 1:]  # (B, T-1): the token after each position
        selected = targets != IGNORE_INDEX
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][selected])  # (K, V)
        loss_sum = F.cross_entropy(logits.float(), targets[selected], reduction="sum")
        return MLLMOutput(hidden=hidden, loss_sum=loss_sum, num_targets=int(selected.sum()))


class MLLM(nn.Module):
    """A LLaVA-style understanding model over a frozen VQRAE tokenizer's features.

    Build it with :meth:`build` (a fresh projector) or :meth:`from_pretrained` (a folder).

    Attributes:
        config: the architecture (with ``feature_dim`` and ``hidden_size`` filled).
        vision: the frozen features (:class:`~vqrae.mllm.vision.VisionFeatures`).
        language: the projector and the LM (:class:`ProjectedLM`), what trains.
        tokenizer: the LM's tokenizer, expanded by the image placeholder.
        vocab: the visual vocabulary (``vocab.image_token_id`` is the placeholder).
        lm_weights: see :data:`LMWeights`.
    """

    def __init__(
        self,
        config: MLLMConfig,
        vision: VisionFeatures,
        projector: Projector,
        lm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        vocab: VisualVocab,
        lm_weights: LMWeights = "reference",
    ) -> None:
        super().__init__()
        self.config = config
        self.vision = vision
        self.language = ProjectedLM(projector, lm, vocab.image_token_id, vision.num_tokens)
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.lm_weights: LMWeights = lm_weights
        self.lora_merged = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        config: MLLMConfig,
        *,
        device: str | torch.device = "auto",
        precision: LMPrecision | Literal["auto"] = "auto",
        attn: Attention | Literal["auto"] = "auto",
        seed: int = 0,
        tokenizer: VQRAE | None = None,
    ) -> MLLM:
        """A model with a freshly initialised projector (seeded), ready for stage 1.

        Args:
            config: the architecture.
            device, precision, attn: the LM's runtime policy (:func:`vqrae.llm.lm_policy`).
            seed: the projector's initialisation.
            tokenizer: a VQRAE to use instead of loading ``config.tokenizer``.
        """
        lm, text_tokenizer, vocab = load_language_model(
            config, device=device, precision=precision, attn=attn
        )
        vqrae = (
            tokenizer if tokenizer is not None else load_tokenizer(config.tokenizer, config.encoder)
        )
        vision = VisionFeatures(vqrae, config.pool, config.image_aspect)
        hidden = lm.get_input_embeddings().weight.shape[1]
        config = replace(config, feature_dim=vision.dim, hidden_size=hidden)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        projector = Projector(config.projector, vision.dim, hidden)
        torch.random.set_rng_state(generator_state)
        model = cls(config, vision, projector, lm, text_tokenizer, vocab)
        return model.to(lm.device)

    @property
    def projector(self) -> Projector:
        return self.language.projector

    @property
    def lm(self) -> PreTrainedModel:
        return self.language.lm

    @property
    def device(self) -> torch.device:
        """Where the language model lives (the other parts live there too)."""
        return self.lm.get_input_embeddings().weight.device

    @property
    def num_image_tokens(self) -> int:
        """Tokens per image in the LM's sequence."""
        return self.vision.num_tokens

    @property
    def image_token_id(self) -> int:
        """The placeholder id that image positions hold."""
        return self.vocab.image_token_id

    # ------------------------------------------------------------------ tuning
    def attach_lora(self, settings: LoRASettings) -> None:
        """Wrap the LM in a fresh trainable LoRA adapter (stage 2 with ``tune: lora``)."""
        if self.lm_weights != "reference":
            raise ValueError(f"the LM already carries {self.lm_weights} weights")
        self.language.lm = add_lora(self.lm, settings)
        self.lm_weights = "lora"

    def tune_full_lm(self) -> None:
        """Record that every weight of the LM trains (stage 2 with ``tune: full``): the folder
        then holds the whole LM."""
        if self.lm_weights == "lora":
            raise ValueError("the LM carries a LoRA adapter: tune it, or start from a projector")
        self.lm_weights = "full"

    def merge_lora(self) -> None:
        """Fold a LoRA adapter into the LM's weights (faster inference; cannot be saved after)."""
        if self.lm_weights == "lora" and not self.lora_merged:
            self.language.lm = self.lm.merge_and_unload()
            self.lora_merged = True

    # ------------------------------------------------------------------ forward
    def embed(self, input_ids: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """See :meth:`ProjectedLM.embed`."""
        return self.language.embed(input_ids, features)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> MLLMOutput:
        """See :meth:`ProjectedLM.forward` (features, not images: :attr:`vision` makes them)."""
        return self.language(input_ids, attention_mask, features, labels, position_ids)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(
        self, directory: str | os.PathLike[str], dtype: torch.dtype | None = None
    ) -> Path:
        """Write the folder described in the module docstring; return it.

        Args:
            directory: created if needed; files of the same names are replaced.
            dtype: cast the projector and adapter weights (``torch.float16`` to ship).

        Raises:
            ValueError: a LoRA adapter merged into the LM (no adapter left to save).
        """
        if self.lora_merged:
            raise ValueError("the LoRA adapter was merged into the LM: load with merge_lora=False")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {
            k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
            .detach()
            .cpu()
            .contiguous()
            for k, v in self.projector.state_dict().items()
        }
        atomic_write(out / PROJECTOR_NAME, lambda tmp: save_file(state, str(tmp)))
        if self.lm_weights == "lora":
            self._save_adapter(out / ADAPTER_DIR, dtype)
        elif self.lm_weights == "full":
            save_expanded_lm(out / LM_DIR, self.lm, self.tokenizer, self.vocab)
        record = {
            "model_type": MODEL_TYPE,
            "format": _FORMAT,
            "config": self.config.to_dict(),
            "lm_weights": self.lm_weights,
            "visual_vocab": self.vocab.to_dict(),
        }
        text = json.dumps(record, indent=2) + "\n"
        atomic_write(out / CONFIG_NAME, lambda tmp: tmp.write_text(text))
        return out

    def _save_adapter(self, folder: Path, dtype: torch.dtype | None) -> None:
        from peft import get_peft_model_state_dict

        folder.mkdir(parents=True, exist_ok=True)
        self.lm.peft_config["default"].save_pretrained(str(folder))
        weights = get_peft_model_state_dict(self.lm, save_embedding_layers=False)
        weights = {
            k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
            .detach()
            .cpu()
            .contiguous()
            for k, v in weights.items()
        }
        path = folder / "adapter_model.safetensors"
        atomic_write(path, lambda tmp: save_file(weights, str(tmp), metadata={"format": "pt"}))

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        *,
        tokenizer: str | VQRAE | None = None,
        device: str | torch.device = "auto",
        precision: LMPrecision | Literal["auto"] = "auto",
        attn: Attention | Literal["auto"] = "auto",
        trainable: bool = False,
        merge_lora: bool = True,
    ) -> MLLM:
        """Load a folder written by :meth:`save_pretrained`.

        Args:
            directory: the folder.
            tokenizer: another VQRAE (name, folder or model) to read features from instead of
                the one the model was trained on, with its own (trained) encoder weights: the
                paper's plug-and-play swap of a fine-tuned encoder; its feature width and token
                grid must match.
            device, precision, attn: the LM's runtime policy.
            trainable: leave a LoRA adapter trainable (to continue training it).
            merge_lora: fold a LoRA adapter into the LM (inference; ignored when trainable).

        Raises:
            FileNotFoundError: not a model folder.
            ValueError: an unknown format, a rebuilt vocabulary that differs from the saved one,
                or a swapped tokenizer whose features do not fit the projector.
        """
        root = Path(directory)
        if not is_mllm_folder(root):
            raise FileNotFoundError(f"{root} is not an understanding-model folder ({CONFIG_NAME})")
        record = json.loads((root / CONFIG_NAME).read_text())
        if record.get("format") != _FORMAT:
            raise ValueError(f"{root}: unknown model format {record.get('format')!r}")
        config = MLLMConfig.from_dict(record["config"])
        lm_weights: LMWeights = record["lm_weights"]
        folder = root / LM_DIR if lm_weights == "full" else None
        lm, text_tokenizer, vocab = load_language_model(
            config, folder=folder, device=device, precision=precision, attn=attn
        )
        saved = VisualVocab.from_dict(record["visual_vocab"])
        if saved != vocab:
            raise ValueError(
                f"{root}: the language model's vocabulary rebuilt as {vocab}, saved as {saved}: "
                f"{config.lm!r} is not the model this folder was trained on"
            )
        if lm_weights == "lora":
            lm = load_lora(lm, root / ADAPTER_DIR, trainable=trainable)
        if isinstance(tokenizer, VQRAE):
            vqrae = tokenizer
        elif tokenizer is not None:  # a swapped-in VQRAE reads with its own encoder weights
            vqrae = VQRAE.from_pretrained(resolve_tokenizer_ref(tokenizer, root))
        else:
            vqrae = load_tokenizer(config.tokenizer, config.encoder, root)
        vision = VisionFeatures(vqrae, config.pool, config.image_aspect)
        if vision.dim != config.feature_dim:
            raise ValueError(
                f"the tokenizer's features are {vision.dim}-d; the projector reads "
                f"{config.feature_dim}-d"
            )
        projector = Projector(config.projector, vision.dim, int(config.hidden_size or 0))
        state = {k: v.float() for k, v in load_file(str(root / PROJECTOR_NAME)).items()}
        projector.load_state_dict(state, strict=True)
        model = cls(config, vision, projector, lm, text_tokenizer, vocab, lm_weights)
        model = model.to(model.device)
        if lm_weights == "lora" and merge_lora and not trainable:
            model.merge_lora()
        return model.eval() if not trainable else model

    def summary(self) -> dict[str, Any]:
        """Facts for logs and run records: parts, sizes, trainable parameter counts."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {
            "tokenizer": self.config.tokenizer,
            "lm": self.config.lm,
            "lm_weights": self.lm_weights,
            "projector": self.config.projector,
            "pool": self.config.pool,
            "image_tokens": self.num_image_tokens,
            "feature_dim": self.config.feature_dim,
            "hidden_size": self.config.hidden_size,
            "trainable_parameters": trainable,
        }
