"""The VQRAE tokenizer: VFM encoder -> d->e projection -> SimVQ -> e->d projection -> ViT decoder.

One encoder serves both uses: :meth:`VQRAE.encode` gives the continuous features Z_I that the
understanding path reads (no quantization error), and :meth:`VQRAE.tokenize` /
:meth:`VQRAE.decode_indices` give the discrete codes that generation and reconstruction use.
Images in and out are float tensors (B, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file, save_file
from torch import nn

from vqrae.tokenizer.decoder import ViTDecoder, _square_grid
from vqrae.tokenizer.encoders import (
    FinalNorm,
    VFMEncoder,
    get_encoder_spec,
    pretrained_encoder_kwargs,
)
from vqrae.tokenizer.quantizer import QuantizerOutput, SimVQ
from vqrae.utils.files import atomic_write

__all__ = ["TokenizerOutput", "VQRAE", "VQRAEConfig"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "vqrae"
DELTA_PREFIX = "encoder_delta."  # int8 differences of trained encoder tensors (compact)


@dataclass
class VQRAEConfig:
    """Architecture of a VQRAE tokenizer (the constructor arguments saved in ``config.json``).

    Attributes:
        encoder: encoder registry name (see :func:`vqrae.tokenizer.encoders.list_encoders`).
        image_size: training / default resolution (divisible by the encoder's patch size).
        encoder_layer: block whose output is the feature (negative counts from the end).
        encoder_final_norm: ``"no_affine"`` (RAE), ``"affine"`` or ``"none"``.
        codebook_size: number of codes k.
        codebook_dim: code dimension e; must be at least the encoder width d.
        commitment_beta: weight of the commitment loss.
        codebook_seed: seed of the frozen random codebook.
        quantizer_chunk_size: tokens per nearest-code chunk (``None``: automatic).
        decoder_width, decoder_depth, decoder_heads: ``None`` mirrors the encoder.
        decoder_mlp_ratio: decoder MLP expansion.
        encoder_scale: the encoder reads images resized by this factor, so each token covers
            ``patch / encoder_scale`` pixels (2 gives DINOv2-S a 32 x 32 grid at 224 px: four
            times the codes of the same image; 3 a 48 x 48 grid). A decoder token's
            ``patch * decoder_merge / encoder_scale`` pixels must be whole.
        decoder_merge: the decoder groups ``m x m`` neighbouring tokens into one transformer token
            (space-to-depth), so a finer code grid costs no more decoder compute; its output patch
            is ``patch * m / encoder_scale`` pixels.
        decoder_refine_channels: width of a residual convolutional refiner on the decoded image
            (0: none, the paper's pure ViT decoder); it starts as the identity, so it can be
            added to a trained model (``init_from`` with this override).
    """

    encoder: str = "dinov2-small"
    image_size: int = 224
    encoder_layer: int = -1
    encoder_final_norm: FinalNorm = "no_affine"
    codebook_size: int = 16384
    codebook_dim: int = 1536
    commitment_beta: float = 0.25
    codebook_seed: int = 0
    quantizer_chunk_size: int | None = None
    decoder_width: int | None = None
    decoder_depth: int | None = None
    decoder_heads: int | None = None
    decoder_mlp_ratio: float = 4.0
    encoder_scale: int = 1
    decoder_merge: int = 1
    decoder_refine_channels: int = 0

    def __post_init__(self) -> None:
        get_encoder_spec(self.encoder)  # raises ValueError naming the known encoders
        checks = {
            "image_size": self.image_size > 0,
            "codebook_size": self.codebook_size >= 2,
            "codebook_dim": self.codebook_dim >= 1,
            "commitment_beta": self.commitment_beta >= 0,
            "decoder_mlp_ratio": self.decoder_mlp_ratio > 0,
            "encoder_scale": self.encoder_scale >= 1,
            "decoder_merge": self.decoder_merge >= 1,
            "decoder_refine_channels": self.decoder_refine_channels >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"invalid {name}: {getattr(self, name)!r}")
        for name in ("decoder_width", "decoder_depth", "decoder_heads", "quantizer_chunk_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"invalid {name}: {value!r} (must be >= 1 or null)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VQRAEConfig:
        """Build a config from a dict, rejecting unknown keys by name."""
        data = {k: v for k, v in data.items() if k not in ("model_type", "vqrae_version")}
        if data.get("extra") == {}:  # an unused field of checkpoints saved before 0.1.0's rooms
            data.pop("extra")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VQRAE config keys: {', '.join(unknown)}")
        return cls(**data)


@dataclass
class TokenizerOutput:
    """What :meth:`VQRAE.forward` returns.

    Attributes:
        recon: reconstructed images in [0, 1] (B, 3, H, W) (unclamped in training).
        features: continuous encoder features Z_I (B, N, d).
        indices: code indices (B, N).
        quantizer: the full :class:`QuantizerOutput` (codes and losses).
    """

    recon: torch.Tensor
    features: torch.Tensor
    indices: torch.Tensor
    quantizer: QuantizerOutput


class VQRAE(nn.Module):
    """Representation-quantization autoencoder.

    Args:
        config: the architecture.
        encoder_state_dict: pretrained encoder weights in timm layout (``None``: random init).
        encoder_mean, encoder_std: input normalisation of those weights.
    """

    def __init__(
        self,
        config: VQRAEConfig,
        encoder_state_dict: dict[str, torch.Tensor] | None = None,
        encoder_mean: tuple[float, float, float] | None = None,
        encoder_std: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = VFMEncoder(
            get_encoder_spec(config.encoder),
            image_size=config.image_size * config.encoder_scale,
            layer=config.encoder_layer,
            final_norm=config.encoder_final_norm,
            state_dict=encoder_state_dict,
            mean=encoder_mean,
            std=encoder_std,
        )
        dim = self.encoder.dim
        if config.codebook_dim < dim:
            raise ValueError(
                f"codebook_dim ({config.codebook_dim}) must be >= the encoder width ({dim}); "
                "the paper finds low-dimensional codebooks do not converge"
            )
        self.quant_proj = nn.Linear(dim, config.codebook_dim)  # d -> e
        self.quantizer = SimVQ(
            config.codebook_size,
            config.codebook_dim,
            beta=config.commitment_beta,
            chunk_size=config.quantizer_chunk_size,
            codebook_seed=config.codebook_seed,
        )
        self.post_quant_proj = nn.Linear(config.codebook_dim, dim)  # e -> d
        merge, patch = config.decoder_merge, self.encoder.patch_size
        if (patch * merge) % config.encoder_scale:
            raise ValueError(
                f"encoder_scale {config.encoder_scale} does not divide the decoder token's "
                f"{patch} x decoder_merge {merge} encoder pixels: its output patch would not be "
                "a whole number of pixels"
            )
        grid_h, grid_w = self.encoder.grid_size
        if grid_h % merge or grid_w % merge:
            raise ValueError(
                f"token grid {grid_h}x{grid_w} is not divisible by decoder_merge {merge}"
            )
        self.decoder = ViTDecoder(
            in_dim=dim * merge * merge,
            width=config.decoder_width or dim,
            depth=config.decoder_depth or self.encoder.depth,
            num_heads=config.decoder_heads or self.encoder.num_heads,
            patch_size=patch * merge // config.encoder_scale,
            grid_size=(grid_h // merge, grid_w // merge),
            mlp_ratio=config.decoder_mlp_ratio,
            refine_channels=config.decoder_refine_channels,
        )

    # ------------------------------------------------------------------ the two paths
    @property
    def patch_size(self) -> int:
        return self.encoder.patch_size

    @property
    def pixels_per_token(self) -> float:
        """Image pixels per token side: ``patch / encoder_scale`` (14 / 3 for DINOv2 at scale 3,
        so not always whole; :attr:`size_multiple` is)."""
        return self.patch_size / self.config.encoder_scale

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: one decoder token's pixels,
        ``patch * decoder_merge / encoder_scale``."""
        return self.patch_size * self.config.decoder_merge // self.config.encoder_scale

    def grid_for_size(self, height: int, width: int) -> tuple[int, int]:
        """Token grid (h, w) of a height x width image."""
        scale, patch = self.config.encoder_scale, self.patch_size
        return height * scale // patch, width * scale // patch

    def grid_for(self, images: torch.Tensor) -> tuple[int, int]:
        """Token grid (h, w) of an image batch (B, 3, H, W)."""
        return self.grid_for_size(images.shape[-2], images.shape[-1])

    def encoder_input(self, images: torch.Tensor) -> torch.Tensor:
        """What the encoder reads: images (B, 3, H, W) resized by ``encoder_scale``."""
        scale = self.config.encoder_scale
        if scale == 1:
            return images
        resized = F.interpolate(images, scale_factor=scale, mode="bicubic", align_corners=False)
        return resized.clamp(0.0, 1.0)  # (B, 3, sH, sW)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous features Z_I for understanding: (B, 3, H, W) in [0, 1] -> (B, N, d)."""
        return self.encoder(self.encoder_input(images))

    def quantize(self, features: torch.Tensor) -> QuantizerOutput:
        """Project features (B, N, d) to the code space and quantize: codes (B, N, e)."""
        return self.quantizer(self.quant_proj(features))

    def decode(
        self, codes: torch.Tensor, grid_size: tuple[int, int] | None = None, clamp: bool = True
    ) -> torch.Tensor:
        """Decode codes (B, N, e) on a (h, w) token grid to images (B, 3, h*q, w*q), where q is
        :attr:`pixels_per_token`; in [0, 1] when ``clamp``."""
        latents = self.post_quant_proj(codes)  # (B, N, d)
        merge = self.config.decoder_merge
        if merge != 1:
            grid_h, grid_w = grid_size if grid_size is not None else _square_grid(latents.shape[1])
            if grid_h % merge or grid_w % merge:
                raise ValueError(f"token grid {grid_h}x{grid_w} is not divisible by {merge}")
            latents = rearrange(
                latents,
                "b (h m1 w m2) d -> b (h w) (m1 m2 d)",
                h=grid_h // merge,
                w=grid_w // merge,
                m1=merge,
                m2=merge,
            )  # (B, N / m^2, m^2 d)
            grid_size = (grid_h // merge, grid_w // merge)
        images = self.decoder(latents, grid_size) * 0.5 + 0.5  # [-1, 1] -> [0, 1]
        return images.clamp(0.0, 1.0) if clamp else images

    def tokenize(self, images: torch.Tensor) -> torch.Tensor:
        """Discrete codes of images: (B, 3, H, W) -> indices (B, N)."""
        return self.quantize(self.encode(images)).indices

    def decode_indices(
        self, indices: torch.Tensor, grid_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Images from code indices (B, N) through the projected codebook W(C)."""
        return self.decode(self.quantizer.indices_to_codes(indices), grid_size)

    def forward(
        self,
        images: torch.Tensor,
        clamp: bool | None = None,
        features: torch.Tensor | None = None,
    ) -> TokenizerOutput:
        """Encode, quantize and decode; ``clamp`` defaults to ``not self.training``.

        ``features`` (B, N, d), when given, are the encoder's output for ``images`` computed
        earlier (a frozen encoder's cache) and replace the encoder pass.
        """
        features = self.encode(images) if features is None else features
        quantized = self.quantize(features)
        clamp = (not self.training) if clamp is None else clamp
        recon = self.decode(quantized.codes, self.grid_for(images), clamp=clamp)
        return TokenizerOutput(
            recon=recon, features=features, indices=quantized.indices, quantizer=quantized
        )

    @torch.no_grad()
    def calibrate_quantizer_input(
        self, features: torch.Tensor, gain: float = 4.0, floor: float = 1e-2
    ) -> None:
        """Data-dependent initialisation of the d->e projection from encoder features (..., d).

        VFM tokens are strongly anisotropic (DINOv2-S patch tokens have an effective rank of
        about 4 of 384) and share a common direction, so through a random projection every token
        is nearest to the same few codes and the codebook collapses before W can learn. This
        sets the projection to a whitening of the features (centred, covariance eigenvalues
        floored at ``floor`` x their mean so near-empty directions are not blown up), embedded
        into the e-dimensional code space by a fixed random orthonormal map and scaled to
        ``gain / sqrt(e)`` per dimension.
        """
        flat = features.reshape(-1, features.shape[-1]).double()  # (T, d)
        dim, code_dim = flat.shape[1], self.config.codebook_dim
        mean = flat.mean(dim=0)
        eigenvalues, vectors = torch.linalg.eigh(torch.cov((flat - mean).T))
        eigenvalues = eigenvalues.clamp_min(0) + floor * eigenvalues.clamp_min(0).mean()
        whiten = vectors @ torch.diag(eigenvalues.rsqrt()) @ vectors.T  # (d, d)
        generator = torch.Generator().manual_seed(self.config.codebook_seed + 1)
        embed = torch.linalg.qr(
            torch.randn(code_dim, dim, generator=generator, dtype=torch.float64)
        )[0]
        weight = (gain / code_dim**0.5) * embed @ whiten  # (e, d)
        self.quant_proj.weight.copy_(weight.to(self.quant_proj.weight))
        self.quant_proj.bias.copy_((-weight @ mean).to(self.quant_proj.bias))

    @torch.no_grad()
    def calibrate_codebook(self, features: torch.Tensor) -> None:
        """Data-dependent initialisation of the d->e projection and the frozen codebook.

        The projection becomes a centring followed by a fixed random orthonormal embedding into
        the e-dimensional code space, scaled to unit total variance; the frozen codebook C
        becomes ``k`` distinct projected feature vectors drawn at random (seeded by
        ``codebook_seed``), and W stays the identity. The codebook then follows the feature
        distribution instead of an isotropic Gaussian: on DINOv2-S tokens (effective rank about
        4, 4096 codes) the nearest code keeps 80% of a held-out token's variance at
        initialisation, against 69% for a Gaussian codebook matched to the feature covariance
        and nothing after a whitening (every direction, noise included, weighs alike). SimVQ's structure is unchanged: C
        stays frozen and W learns; the codebook is saved with the weights.

        Args:
            features: encoder features (..., d) with at least ``codebook_size`` vectors.
        """
        flat = features.reshape(-1, features.shape[-1]).double()  # (T, d)
        size, code_dim = self.config.codebook_size, self.config.codebook_dim
        if flat.shape[0] < size:
            raise ValueError(
                f"codebook calibration needs at least {size} feature vectors, got {flat.shape[0]}"
            )
        mean = flat.mean(dim=0)
        total_variance = (flat - mean).pow(2).sum(dim=1).mean()
        generator = torch.Generator().manual_seed(self.config.codebook_seed + 1)
        embed = torch.linalg.qr(
            torch.randn(code_dim, flat.shape[1], generator=generator, dtype=torch.float64)
        )[0]  # (e, d), orthonormal columns
        weight = embed / total_variance.clamp_min(1e-12).sqrt()
        self.quant_proj.weight.copy_(weight.to(self.quant_proj.weight))
        self.quant_proj.bias.copy_((-weight @ mean).to(self.quant_proj.bias))
        chosen = torch.randperm(flat.shape[0], generator=generator)[:size]
        codebook = (flat[chosen] - mean) @ weight.T  # (k, e)
        self.quantizer.set_codebook(codebook, reset_transform=True)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Round trip through the discrete codes, clamped to [0, 1]."""
        return self.forward(images, clamp=True).recon

    # ------------------------------------------------------------------ persistence
    def save_pretrained(
        self,
        directory: str | os.PathLike,
        dtype: torch.dtype | None = None,
        compact: bool = False,
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically).

        Args:
            directory: created if missing; existing files of the same names are replaced.
            dtype: cast floating-point weights (e.g. ``torch.float16``) for a smaller file.
            compact: leave out what can be rebuilt exactly: the encoder tensors that still equal
                their pretrained weights (reloaded through :mod:`vqrae.assets`; compared here, so
                an encoder whose last blocks were trained stores only those blocks) and the
                frozen codebook when it is the random one regenerated from ``codebook_seed`` (a
                checksum in ``config.json`` is verified on load). With a 16-bit ``dtype``, a
                trained encoder matrix is stored as its int8 difference from the pretrained one
                (one scale per row; each element within half a step): half the bytes.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        omitted: dict[str, Any] = {}
        skip: set[str] = set()
        state: dict[str, torch.Tensor] = {}
        if compact:
            reference = self._pretrained_encoder_state()
            half = dtype in (torch.float16, torch.bfloat16)
            for key, tensor in self.encoder.state_dict().items():
                if key not in reference:
                    continue
                tensor = tensor.detach().cpu()
                if torch.equal(reference[key], tensor):
                    skip.add(f"encoder.{key}")
                elif half and (packed := _int8_delta(tensor, reference[key])) is not None:
                    state[f"{DELTA_PREFIX}{key}.q"], state[f"{DELTA_PREFIX}{key}.scale"] = packed
                    skip.add(f"encoder.{key}")
            if skip:
                omitted["encoder"] = "pretrained"
            codebook = self.quantizer.codebook.detach().cpu()
            if torch.equal(codebook, _seeded_codebook(self.config)):
                omitted["codebook_checksum"] = _checksum(codebook)
                skip.add("quantizer.codebook")
        for key, tensor in self.state_dict().items():
            if key in skip:
                continue
            tensor = tensor.detach().cpu()
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            state[key] = tensor.contiguous()
        config = {"model_type": MODEL_TYPE, **self.config.to_dict()}
        if omitted:
            config["omitted_weights"] = omitted
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        atomic_write(directory / WEIGHTS_NAME, lambda path: save_file(state, str(path)))
        atomic_write(directory / CONFIG_NAME, lambda path: path.write_text(text))
        return directory

    def _pretrained_encoder_state(self) -> dict[str, torch.Tensor]:
        """The encoder's pretrained state (empty for an encoder without pretrained weights)."""
        if get_encoder_spec(self.config.encoder).asset is None:
            return {}
        return load_pretrained_encoder(self.config).state_dict()

    @classmethod
    def from_directory(
        cls, directory: str | os.PathLike, device: str | torch.device | None = None
    ) -> VQRAE:
        """Load a ``save_pretrained`` directory (weights loaded strictly, kept in float32)."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: not a VQRAE checkpoint directory")
        data = json.loads(config_path.read_text())
        if data.get("model_type", MODEL_TYPE) != MODEL_TYPE:
            raise ValueError(
                f"{config_path}: model_type is {data.get('model_type')!r}, not 'vqrae'"
            )
        omitted = data.pop("omitted_weights", {})
        config = VQRAEConfig.from_dict(data)
        target = str(device) if device is not None else "cpu"
        state = load_file(str(weights_path), device=target)
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        deltas = {k: state.pop(k) for k in [k for k in state if k.startswith(DELTA_PREFIX)]}
        if omitted.get("encoder") == "pretrained":
            encoder = load_pretrained_encoder(config).state_dict()
            for key, value in encoder.items():  # saved (trained) encoder tensors take precedence
                q = deltas.get(f"{DELTA_PREFIX}{key}.q")
                if q is not None:
                    scale = deltas[f"{DELTA_PREFIX}{key}.scale"]
                    state[f"encoder.{key}"] = value.to(target) + q.float() * scale
                state.setdefault(f"encoder.{key}", value.to(target))
        if "codebook_checksum" in omitted:
            codebook = _seeded_codebook(config)
            if _checksum(codebook) != omitted["codebook_checksum"]:
                raise ValueError(
                    f"{directory}: the codebook regenerated from its seed does not match the saved "
                    "checksum (a different torch random generator?); re-save without compact"
                )
            state["quantizer.codebook"] = codebook.to(target)
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict(state, strict=True, assign=True)
        model.quantizer.usage_counts = torch.zeros_like(model.quantizer.usage_counts, device=target)
        return model.eval()

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, device: str | torch.device | None = None
    ) -> VQRAE:
        """Load a trained tokenizer: a ``save_pretrained`` directory, or the name of a trained
        checkpoint in the :mod:`vqrae.assets` catalogue (``vqrae-dinov2-s-demo``: shipped with
        the package, else the cache or the Hub).

        A registered variant without trained weights is refused: its decoder would be random
        and reconstruct noise. ``vqrae.create_model(name)`` builds it for training.

        Raises:
            ValueError: neither a directory nor a trained checkpoint's name.
            FileNotFoundError: a directory that is not a checkpoint.
            vqrae.assets.AssetError: a trained checkpoint no source could provide.
        """
        path = Path(name_or_path)
        if path.is_dir():
            return cls.from_directory(path, device=device)
        from vqrae import assets

        name = str(name_or_path)
        trained = trained_checkpoints()
        if name not in trained:
            raise ValueError(
                f"{name!r} is neither a checkpoint directory nor a trained model (trained: "
                f"{', '.join(trained) or 'none'}); a registered variant without trained weights "
                "has a random decoder: build it for training with vqrae.create_model(name)"
            )
        return cls.from_directory(assets.resolve(name), device=device)


def trained_checkpoints() -> list[str]:
    """Names of the trained tokenizer checkpoints in the asset catalogue."""
    from vqrae import assets

    return [s.name for s in assets.list_assets() if s.kind == "vqrae"]


def load_pretrained_encoder(config: VQRAEConfig) -> VFMEncoder:
    """The encoder of ``config`` with its original pretrained weights: the stage-2 teacher,
    and the reference a compact export leaves out."""
    return VFMEncoder(
        get_encoder_spec(config.encoder),
        image_size=config.image_size * config.encoder_scale,
        layer=config.encoder_layer,
        final_norm=config.encoder_final_norm,
        **pretrained_encoder_kwargs(config.encoder),
    )


def _int8_delta(
    trained: torch.Tensor, reference: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``trained - reference`` as int8 with one float32 scale per row (None for a vector, or
    where the shapes differ): each element within half a step, max |row difference| / 254.

    Returns:
        (q, scale): q int8 of ``trained``'s shape (rows, ...), scale (rows, 1, ...).
    """
    if reference is None or trained.ndim < 2 or reference.shape != trained.shape:
        return None
    delta = trained.double() - reference.double()  # (rows, ...)
    scale = delta.abs().amax(dim=tuple(range(1, delta.ndim)), keepdim=True) / 127
    scale = scale.float().clamp_min(torch.finfo(torch.float32).tiny)
    q = (delta / scale).round().clamp(-127, 127).to(torch.int8)
    return q, scale


def _seeded_codebook(config: VQRAEConfig) -> torch.Tensor:
    """The random frozen codebook a fresh model of ``config`` starts with (k, e)."""
    return SimVQ(
        config.codebook_size, config.codebook_dim, codebook_seed=config.codebook_seed
    ).codebook


def _checksum(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's float32 bytes."""
    import hashlib

    data = tensor.detach().float().cpu().contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()
