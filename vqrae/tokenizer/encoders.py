"""Vision-foundation-model encoders: timm ViTs that return patch tokens.

An encoder maps images in [0, 1] (B, 3, H, W) to patch tokens (B, N, d): CLS and register tokens
dropped, taken from a configurable block (default the last), optionally passed through the final
LayerNorm without its affine (as RAE does). Inputs are normalised with the weights' own mean and
std, which live as buffers beside the weights so preprocessing cannot drift from them. Any
resolution divisible by the patch size works: the position embedding is resampled to the
configured size at load time and interpolated on the fly for other sizes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

__all__ = [
    "ENCODERS",
    "EncoderSpec",
    "FinalNorm",
    "VFMEncoder",
    "get_encoder_spec",
    "list_encoders",
    "pretrained_encoder_kwargs",
]

log = logging.getLogger(__name__)

FinalNorm = Literal["affine", "no_affine", "none"]


@dataclass(frozen=True)
class EncoderSpec:
    """A named encoder: the catalogue entry of its weights, or a random architecture.

    The architecture, normalisation and position-grid resampling of a pretrained encoder are
    facts of its weights, so they are read from its :mod:`vqrae.assets` catalogue entry.

    Attributes:
        name: registry name (``dinov2-small``, ``siglip2-so400m-p16-256``, ...).
        asset: the catalogue entry with the weights (``None``: random init, then ``timm_arch``).
        description: one line for listings.
        timm_arch: timm model name, only for encoders without an asset.
        arch_overrides: keyword overrides for ``timm.create_model`` (tiny test encoders).
    """

    name: str
    asset: str | None
    description: str = ""
    timm_arch: str | None = None
    arch_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.asset is None) == (self.timm_arch is None):
            raise ValueError(f"encoder {self.name!r}: give exactly one of asset and timm_arch")

    @property
    def architecture(self) -> str:
        """The timm model name the weights load into strictly."""
        if self.timm_arch is not None:
            return self.timm_arch
        return str(self._asset_config()["architecture"])

    @property
    def pos_embed_antialias(self) -> bool:
        """Whether the position grid is resized with antialiasing. The original DINOv2 (and
        Hugging Face's port) resize bicubically without it; timm's default antialiases, which
        moves DINOv2-S features at 224 px by ~6%."""
        resample = self._asset_config().get("pos_embed_resample", {}) if self.asset else {}
        return bool(resample.get("antialias", False))

    def _asset_config(self) -> dict[str, Any]:
        from vqrae import assets

        assert self.asset is not None
        return dict(assets.get_spec(self.asset).config)


ENCODERS: dict[str, EncoderSpec] = {}


def _register(spec: EncoderSpec) -> None:
    ENCODERS[spec.name] = spec


for _name, _description in (
    ("dinov2-small", "DINOv2 ViT-S/14 (d=384)"),
    ("dinov2-base", "DINOv2 ViT-B/14 (d=768)"),
    ("dinov2-large", "DINOv2 ViT-L/14 (d=1024)"),
    ("siglip2-so400m-p16-256", "SigLIP2 so400m/16 at 256 px (d=1152)"),
    ("siglip2-so400m-p16-512", "SigLIP2 so400m/16 at 512 px (d=1152)"),
    ("internvit-300m-448", "InternViT-300M/14 at 448 px (d=1024)"),
    ("clip-vit-large-p14", "OpenAI CLIP ViT-L/14 at 224 px (d=1024)"),
):
    _register(EncoderSpec(_name, asset=_name, description=_description))
_register(
    EncoderSpec(
        "tiny-test",
        asset=None,
        description="random 2-block ViT/14 (d=32) for tests",
        timm_arch="vit_small_patch14_dinov2",
        arch_overrides={"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 56},
    )
)


def get_encoder_spec(name: str) -> EncoderSpec:
    """Look up an encoder by name; raises ``ValueError`` listing the known names."""
    try:
        return ENCODERS[name]
    except KeyError:
        known = ", ".join(sorted(ENCODERS))
        raise ValueError(f"unknown encoder {name!r}; known encoders: {known}") from None


def list_encoders() -> list[str]:
    """Names of the registered encoders."""
    return sorted(ENCODERS)


class VFMEncoder(nn.Module):
    """A timm ViT reduced to what VQRAE reads from it: patch tokens of one block.

    Args:
        spec: the encoder entry (architecture and weight source).
        image_size: the resolution the position embedding is resampled to.
        layer: index of the block whose output is returned (negative counts from the end);
            later blocks are removed.
        final_norm: ``"no_affine"`` applies the final LayerNorm without its scale and shift
            (RAE's choice), ``"affine"`` keeps it, ``"none"`` skips it.
        state_dict: pretrained weights in the timm key layout (loaded strictly), or ``None``.
        mean, std: input normalisation; taken from the weights' metadata by the caller, else
            from timm's pretrained config for the architecture.
    """

    def __init__(
        self,
        spec: EncoderSpec,
        image_size: int,
        layer: int = -1,
        final_norm: FinalNorm = "no_affine",
        state_dict: dict[str, torch.Tensor] | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__()
        if final_norm not in ("affine", "no_affine", "none"):
            raise ValueError(
                f"final_norm must be 'affine', 'no_affine' or 'none', got {final_norm!r}"
            )
        self.spec = spec
        vit = timm.create_model(
            spec.architecture,
            pretrained=False,
            num_classes=0,
            dynamic_img_size=True,
            **spec.arch_overrides,
        )
        if state_dict is not None:
            _load_strict(vit, state_dict, spec.name, spec.pos_embed_antialias)
        patch = vit.patch_embed.patch_size[0]
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not divisible by the patch size {patch}")
        if tuple(vit.patch_embed.img_size) != (image_size, image_size):
            native = vit.pos_embed.detach().clone() if vit.pos_embed is not None else None
            vit.set_input_size(img_size=(image_size, image_size))
            if native is not None:  # redo timm's resampling with this encoder's antialias choice
                prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
                with torch.no_grad():
                    vit.pos_embed.copy_(
                        resample_abs_pos_embed(
                            native,
                            new_size=vit.patch_embed.grid_size,
                            num_prefix_tokens=prefix,
                            antialias=spec.pos_embed_antialias,
                        )
                    )

        depth = len(vit.blocks)
        block_index = layer if layer >= 0 else depth + layer
        if not 0 <= block_index < depth:
            raise ValueError(f"layer {layer} is out of range for a {depth}-block encoder")
        self.patch_size = patch
        self.image_size = image_size
        self.dim: int = vit.embed_dim
        self.num_heads: int = vit.blocks[0].attn.num_heads
        self.depth = block_index + 1
        self.layer = layer
        self.final_norm = final_norm
        self.num_prefix_tokens: int = vit.num_prefix_tokens

        cfg_mean = vit.pretrained_cfg.get("mean", (0.485, 0.456, 0.406))
        cfg_std = vit.pretrained_cfg.get("std", (0.229, 0.224, 0.225))
        mean_t = torch.tensor(mean if mean is not None else cfg_mean, dtype=torch.float32)
        std_t = torch.tensor(std if std is not None else cfg_std, dtype=torch.float32)
        self.register_buffer("mean", mean_t.view(1, 3, 1, 1))
        self.register_buffer("std", std_t.view(1, 3, 1, 1))

        # Keep only what the forward pass uses.
        self.patch_embed = vit.patch_embed
        self.cls_token = vit.cls_token
        self.reg_token = vit.reg_token
        self.pos_embed = vit.pos_embed
        self.vit_config = {
            "no_embed_class": vit.no_embed_class,
            "has_class_token": vit.has_class_token,
        }
        self.norm_pre = vit.norm_pre
        self.blocks = nn.Sequential(*list(vit.blocks)[: self.depth])
        self.norm = self._build_final_norm(vit.norm, final_norm)

    @staticmethod
    def _build_final_norm(norm: nn.Module, final_norm: FinalNorm) -> nn.Module:
        if final_norm == "none" or isinstance(norm, nn.Identity):
            return nn.Identity()
        if final_norm == "affine":
            return norm
        if not isinstance(norm, nn.LayerNorm):
            raise ValueError(
                f"final_norm='no_affine' needs a LayerNorm, found {type(norm).__name__}"
            )
        return nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=False)

    def trainable_tail(self, num_blocks: int) -> nn.ModuleList:
        """The last ``num_blocks`` blocks and the final norm (what partial fine-tuning trains)."""
        if not 1 <= num_blocks <= len(self.blocks):
            raise ValueError(f"num_blocks must be in [1, {len(self.blocks)}], got {num_blocks}")
        return nn.ModuleList([*list(self.blocks)[-num_blocks:], self.norm])

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid at the configured resolution."""
        side = self.image_size // self.patch_size
        return side, side

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens of ``images`` (B, 3, H, W) in [0, 1] -> (B, N, d), N = (H/p)(W/p)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image size {height}x{width} is not divisible by the patch size {self.patch_size}"
            )
        x = (images - self.mean) / self.std
        x = self.patch_embed(x)  # (B, H/p, W/p, d) with dynamic_img_size
        x = self._pos_embed(x)  # (B, prefix + N, d)
        x = self.norm_pre(x)
        x = self.blocks(x)
        x = self.norm(x)
        return x[:, self.num_prefix_tokens :]  # (B, N, d)

    def forward_from(self, hidden: torch.Tensor, start: int) -> torch.Tensor:
        """Finish :meth:`forward` from ``hidden`` (B, prefix + N, d), the output of block
        ``start - 1``: blocks ``start`` on, the final norm, the patch tokens (B, N, d)."""
        if not 1 <= start <= len(self.blocks):
            raise ValueError(f"start must be in [1, {len(self.blocks)}], got {start}")
        x = self.blocks[start:](hidden)
        x = self.norm(x)
        return x[:, self.num_prefix_tokens :]

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Add (interpolated) position embeddings and prepend class / register tokens."""
        batch, grid_h, grid_w, dim = x.shape
        prefix = 0 if self.vit_config["no_embed_class"] else self.num_prefix_tokens
        pos_embed = self.pos_embed
        if pos_embed is not None:
            pos_embed = resample_abs_pos_embed(
                pos_embed,
                new_size=(grid_h, grid_w),
                num_prefix_tokens=prefix,
                antialias=self.spec.pos_embed_antialias,
            )
        x = x.reshape(batch, grid_h * grid_w, dim)  # (B, N, d)
        tokens = []
        if self.cls_token is not None:
            tokens.append(self.cls_token.expand(batch, -1, -1))
        if self.reg_token is not None:
            tokens.append(self.reg_token.expand(batch, -1, -1))
        if self.vit_config["no_embed_class"]:
            if pos_embed is not None:
                x = x + pos_embed
            return torch.cat([*tokens, x], dim=1) if tokens else x
        if tokens:
            x = torch.cat([*tokens, x], dim=1)
        return x + pos_embed if pos_embed is not None else x


def _load_strict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], name: str, antialias: bool = False
) -> None:
    """Load ``state_dict`` into a timm model, resampling the position embedding if needed."""
    state_dict = dict(state_dict)
    pos = state_dict.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape:
        prefix = 0 if model.no_embed_class else model.num_prefix_tokens
        grid = model.patch_embed.grid_size
        state_dict["pos_embed"] = resample_abs_pos_embed(
            pos, new_size=grid, num_prefix_tokens=prefix, antialias=antialias
        )
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    # The classifier head was removed (num_classes=0); anything else must match exactly.
    unexpected = [k for k in unexpected if not k.startswith("head.")]
    if missing or unexpected:
        raise ValueError(
            f"weights for encoder {name!r} do not match its architecture: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )


def pretrained_encoder_kwargs(encoder: str) -> dict[str, Any]:
    """Weights and normalisation of a registered encoder, through :mod:`vqrae.assets`.

    Returns ``state_dict`` / ``mean`` / ``std`` keyword arguments of :class:`VFMEncoder`
    (empty for encoders without pretrained weights).
    """
    spec = get_encoder_spec(encoder)
    if spec.asset is None:
        return {}
    from vqrae import assets

    meta = assets.load_config(spec.asset)
    return {
        "state_dict": assets.load_state_dict(spec.asset),
        "mean": tuple(meta["mean"]) if "mean" in meta else None,
        "std": tuple(meta["std"]) if "std" in meta else None,
    }
