"""Export to transformers' ``LlavaForConditionalGeneration`` (vision tower + projector + LM).

transformers' Llava runs ``vision_tower(pixel_values)``, takes ``hidden_states[
vision_feature_layer]``, drops the CLS token (``vision_feature_select_strategy: "default"``),
applies ``Linear -> GELU -> Linear`` and splices the result at ``image_token_index``
placeholders. An understanding model maps onto that exactly when:

* its encoder is a DINOv2 ViT (a timm ``vit_*_dinov2`` without register tokens), which maps onto
  ``Dinov2Model``: the encoder is truncated at the model's feature block, so the feature layer is
  the last hidden state of the exported tower (``vision_feature_layer: -1``);
* the features are that block's raw output: ``encoder_final_norm: "none"``. Llava reads hidden
  states *before* any final LayerNorm and has no place for one; RAE's affine-free final norm
  (``"no_affine"``, the default of VQRAE tokenizers) or an affine one cannot be reproduced, so
  such a model is refused;
* no token pooling (Llava projects every patch token) and the ``mlp2x_gelu`` projector.

timm keys map as: ``patch_embed.proj`` -> ``embeddings.patch_embeddings.projection``,
``cls_token`` / ``pos_embed`` -> ``embeddings.cls_token`` / ``position_embeddings`` (already
resampled to the tower's ``image_size``, so transformers does not interpolate), ``blocks.i`` ->
``encoder.layer.i`` with the fused ``attn.qkv`` split into ``q_proj``/``k_proj``/``v_proj``,
``attn.proj`` -> ``o_proj``, ``ls1.gamma``/``ls2.gamma`` -> ``layer_scale1/2.lambda1``.
``pixel_values`` are the encoder's input: the square image resized by ``encoder_scale`` and
normalised by the encoder's mean and std; the exported image processor resizes and normalises
so, without the pad-to-square rule (``image_aspect: "pad"`` pads before it).

A LoRA adapter is merged into the LM first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vqrae.mllm.model import MLLM

if TYPE_CHECKING:
    from transformers import Dinov2Config, LlavaForConditionalGeneration

__all__ = ["ExportError", "export_llava", "llava_pixel_values", "timm_to_hf_dinov2", "to_llava"]


class ExportError(ValueError):
    """The model cannot be expressed as a ``LlavaForConditionalGeneration``; says why."""


def _check(model: MLLM) -> None:
    vqrae = model.vision.tokenizer
    encoder = vqrae.encoder
    arch = encoder.spec.architecture
    if "dinov2" not in arch or not arch.startswith("vit_"):
        raise ExportError(
            f"encoder {vqrae.config.encoder!r} ({arch}) has no transformers vision-model "
            "mapping here (DINOv2 ViTs map onto Dinov2Model)"
        )
    if encoder.num_prefix_tokens != 1 or encoder.reg_token is not None:
        raise ExportError("a DINOv2 with register tokens does not map onto Dinov2Model")
    if not isinstance(encoder.norm, torch.nn.Identity):
        raise ExportError(
            f"the features pass the encoder's final LayerNorm (encoder_final_norm "
            f"{vqrae.config.encoder_final_norm!r}); LlavaForConditionalGeneration reads a vision "
            "model's hidden states before any final norm and cannot apply it: export a model "
            "trained on a tokenizer with encoder_final_norm 'none'"
        )
    grid = model.vision.grid
    if model.num_image_tokens != grid[0] * grid[1]:
        raise ExportError(
            f"the model pools the {grid[0]}x{grid[1]} token grid to {model.config.pool}x"
            f"{model.config.pool}; LlavaForConditionalGeneration projects every patch token"
        )
    if model.config.projector != "mlp2x_gelu":
        raise ExportError(
            f"projector {model.config.projector!r}: LlavaForConditionalGeneration's projector "
            "is mlp2x_gelu (Linear-GELU-Linear)"
        )


def _dinov2_config(model: MLLM) -> Dinov2Config:
    from transformers import Dinov2Config

    encoder = model.vision.tokenizer.encoder
    block = encoder.blocks[0]
    return Dinov2Config(
        hidden_size=encoder.dim,
        num_hidden_layers=len(encoder.blocks),
        num_attention_heads=encoder.num_heads,
        intermediate_size=block.mlp.fc1.out_features,
        hidden_act="gelu",
        layer_norm_eps=block.norm1.eps,
        image_size=encoder.image_size,
        patch_size=encoder.patch_size,
        qkv_bias=block.attn.qkv.bias is not None,
        layerscale_value=1.0,
        use_swiglu_ffn=False,
    )


def timm_to_hf_dinov2(state: dict[str, torch.Tensor], dim: int) -> dict[str, torch.Tensor]:
    """An encoder's timm keys -> ``Dinov2Model`` keys (see the module docstring).

    Raises:
        ExportError: a key with no counterpart.
    """
    out: dict[str, torch.Tensor] = {}
    direct = {
        "cls_token": "embeddings.cls_token",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    }
    block_parts = {
        "norm1": "norm1",
        "norm2": "norm2",
        "attn.proj": "attention.o_proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    for key, tensor in state.items():
        if key in ("mean", "std"):
            continue  # normalisation buffers: the image processor's job
        if key in direct:
            out[direct[key]] = tensor
            continue
        parts = key.split(".")
        if parts[0] != "blocks":
            raise ExportError(f"encoder key {key!r} has no Dinov2Model counterpart")
        layer, rest = parts[1], ".".join(parts[2:])
        prefix = f"encoder.layer.{layer}."
        if rest in ("ls1.gamma", "ls2.gamma"):
            out[prefix + f"layer_scale{rest[2]}.lambda1"] = tensor
        elif rest.startswith("attn.qkv."):
            kind = rest.rsplit(".", 1)[1]  # weight | bias
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.split(dim), strict=True):
                out[prefix + f"attention.{name}.{kind}"] = chunk
        else:
            module, _, kind = rest.rpartition(".")
            if module not in block_parts:
                raise ExportError(f"encoder key {key!r} has no Dinov2Model counterpart")
            out[prefix + f"{block_parts[module]}.{kind}"] = tensor
    return out


def to_llava(model: MLLM) -> LlavaForConditionalGeneration:
    """The model as a ``LlavaForConditionalGeneration`` (float32, CPU, eval mode).

    Raises:
        ExportError: the model does not map (see the module docstring).
    """
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    _check(model)
    model.merge_lora()
    lm = model.lm
    config = LlavaConfig(
        vision_config=_dinov2_config(model),
        text_config=lm.config,
        image_token_index=model.image_token_id,
        image_seq_length=model.num_image_tokens,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(getattr(lm.config, "tie_word_embeddings", False)),
    )
    llava = LlavaForConditionalGeneration(config).float().eval()
    encoder = model.vision.tokenizer.encoder
    state: dict[str, torch.Tensor] = {}
    vision = timm_to_hf_dinov2(encoder.state_dict(), encoder.dim)
    vision["embeddings.mask_token"] = torch.zeros(1, encoder.dim)  # unused without masking
    vision["layernorm.weight"] = torch.ones(encoder.dim)  # Llava reads hidden states, not the
    vision["layernorm.bias"] = torch.zeros(encoder.dim)  # normed last state: an identity here
    state |= {f"model.vision_tower.{k}": v for k, v in vision.items()}
    first, second = model.projector.linears
    state |= {
        "model.multi_modal_projector.linear_1.weight": first.weight,
        "model.multi_modal_projector.linear_1.bias": first.bias,
        "model.multi_modal_projector.linear_2.weight": second.weight,
        "model.multi_modal_projector.linear_2.bias": second.bias,
    }
    decoder = lm.get_decoder().state_dict()
    state |= {f"model.language_model.{k}": v for k, v in decoder.items()}
    state["lm_head.weight"] = lm.get_output_embeddings().weight
    state = {k: v.detach().float().cpu() for k, v in state.items()}
    missing, unexpected = llava.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ExportError(f"weights do not map: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return llava


@torch.no_grad()
def llava_pixel_values(model: MLLM, images: torch.Tensor) -> torch.Tensor:
    """What the exported model reads for square images (B, 3, S, S) in [0, 1]: the encoder's
    input, resized by ``encoder_scale`` and normalised by its mean and std."""
    vqrae = model.vision.tokenizer
    encoder = vqrae.encoder
    x = vqrae.encoder_input(images.to(encoder.mean.device))
    return (x - encoder.mean) / encoder.std


def _image_processor(model: MLLM) -> Any:
    from transformers import BitImageProcessor

    encoder = model.vision.tokenizer.encoder
    side = encoder.image_size
    return BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": side},
        resample=3,  # bicubic
        do_center_crop=True,
        crop_size={"height": side, "width": side},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=encoder.mean.flatten().tolist(),
        image_std=encoder.std.flatten().tolist(),
        do_convert_rgb=True,
    )


def export_llava(model: MLLM, out: str | os.PathLike[str]) -> Path:
    """Write ``out``: the Llava model (``save_pretrained``), the tokenizer and a processor
    (``LlavaProcessor``: the image processor and the chat template; ``<|image|>`` in a prompt
    expands to the image's tokens).

    Raises:
        ExportError: the model does not map (see the module docstring).
    """
    from transformers import LlavaProcessor

    llava = to_llava(model)
    path = Path(out)
    llava.save_pretrained(path)
    encoder = model.vision.tokenizer.encoder
    processor = LlavaProcessor(
        image_processor=_image_processor(model),
        tokenizer=model.tokenizer,
        patch_size=encoder.patch_size,
        vision_feature_select_strategy="default",
        chat_template=model.tokenizer.chat_template,
        image_token=model.tokenizer.convert_ids_to_tokens(model.image_token_id),
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(path)
    return path
