"""The training objective of VQRAE, composed around the pure model.

Generator side (encoder projections, codebook map W, decoder, and in stage 2 the encoder):

    L = w_l2 ||x - x_hat||^2 + w_p LPIPS(x, x_hat) + w_s (1 - SSIM(x, x_hat)) + w_q L_quant
        + w_d ||Z_I - T(x)||^2                         (stage 2 self-distillation)
        + w_g(t) * (-mean D(x_hat))                    (after gan_start_step)

where T is a frozen copy of the original encoder and ``w_g`` is fixed or, optionally, VQGAN's
adaptive weight (ratio of the reconstruction and adversarial gradient norms at the decoder's
last layer). Discriminator side: hinge loss plus LeCam regularisation. Nothing here logs or
steps an optimizer: both methods return ``(loss, metrics)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vqrae.eval.metrics import ssim_from_tensors
from vqrae.tokenizer.discriminator import LeCamEMA, PatchDiscriminator, hinge_d_loss
from vqrae.tokenizer.model import VQRAE

__all__ = ["ObjectiveConfig", "ObjectiveOutput", "TokenizerObjective"]


@dataclass
class ObjectiveConfig:
    """Loss weights and schedule (defaults: the paper's stage 1 without GAN).

    Attributes:
        l2_weight: pixel MSE weight.
        perceptual_weight: LPIPS weight (paper 1.1 with a ConvNeXt perceptual net).
        ssim_weight: weight of ``1 - SSIM`` (Gaussian window, as the evaluation measures it);
            an L2-only decoder blurs, and this term pays for local contrast and structure at
            the cost of a few grouped convolutions (0 disables; not in the paper).
        quantizer_weight: weight of the SimVQ loss (which already holds beta).
        distill_weight: self-distillation weight lambda_d (0 in stage 1, 1.0 in stage 2).
        gan_weight: adversarial weight for the generator (0.1 in stage 2; 0 disables the GAN).
        gan_start_step: step from which the discriminator trains and the GAN loss applies.
        adaptive_gan_weight: scale the GAN weight by VQGAN's gradient-norm ratio.
        lecam_weight: LeCam regularisation weight for the discriminator (0 disables).
        lecam_decay: EMA decay of the LeCam logit averages.
        disc_channels, disc_layers: discriminator size.
        perceptual_crop: apply LPIPS to one random ``crop x crop`` window per step (the same
            window in both images) instead of the whole image; 0 uses the whole image. LPIPS
            and its backward dominate a CPU step, and its cost falls with the window's area.
        seed: seed of the window positions (a function of ``(seed, step)``, so resuming and
            multi-process runs see the same windows).
    """

    l2_weight: float = 1.0
    perceptual_weight: float = 1.1
    ssim_weight: float = 0.0
    quantizer_weight: float = 1.0
    distill_weight: float = 0.0
    gan_weight: float = 0.0
    gan_start_step: int = 0
    adaptive_gan_weight: bool = False
    lecam_weight: float = 0.001
    lecam_decay: float = 0.999
    disc_channels: int = 64
    disc_layers: int = 3
    perceptual_crop: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "l2_weight",
            "perceptual_weight",
            "ssim_weight",
            "quantizer_weight",
            "distill_weight",
            "gan_weight",
            "lecam_weight",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"objective.{name} must be >= 0, got {getattr(self, name)}")
        if self.perceptual_crop < 0:
            raise ValueError(f"objective.perceptual_crop must be >= 0, got {self.perceptual_crop}")
        if self.gan_start_step < 0:
            raise ValueError(f"objective.gan_start_step must be >= 0, got {self.gan_start_step}")

    @property
    def uses_gan(self) -> bool:
        return self.gan_weight > 0


@dataclass
class ObjectiveOutput:
    """A loss to backpropagate, detached scalar metrics to log, and the reconstruction.

    Metrics stay tensors (no device synchronisation per step); convert them when logging.
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
    recon: torch.Tensor
    indices: torch.Tensor


class TokenizerObjective(nn.Module):
    """Losses for VQRAE training; owns the discriminator and LeCam state.

    Args:
        config: weights and schedule.
        perceptual: module mapping (x_hat, x) in [0, 1] to per-image distances (B,), or None.
        teacher: frozen encoder mapping images to features (B, N, d) for stage 2, or None.
    """

    def __init__(
        self,
        config: ObjectiveConfig,
        perceptual: nn.Module | None = None,
        teacher: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if config.perceptual_weight > 0 and perceptual is None:
            raise ValueError("objective.perceptual_weight > 0 needs a perceptual network")
        if config.distill_weight > 0 and teacher is None:
            raise ValueError("objective.distill_weight > 0 needs a teacher encoder")
        self.config = config
        self.perceptual = perceptual
        self.teacher = teacher
        for frozen in (perceptual, teacher):
            if frozen is not None:
                frozen.eval().requires_grad_(False)
        self.discriminator = (
            PatchDiscriminator(config.disc_channels, config.disc_layers)
            if config.uses_gan
            else None
        )
        self.lecam = LeCamEMA(config.lecam_decay) if config.uses_gan else None

    def train(self, mode: bool = True) -> TokenizerObjective:
        super().train(mode)
        for frozen in (self.perceptual, self.teacher):  # frozen networks stay in eval mode
            if frozen is not None:
                frozen.eval()
        return self

    def gan_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.config.gan_start_step

    def generator_loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        step: int,
        features: torch.Tensor | None = None,
    ) -> ObjectiveOutput:
        """Run the model on ``images`` (B, 3, H, W) in [0, 1] and return its total loss.

        ``model`` may be a DDP / FSDP wrapper around a :class:`VQRAE`; ``features`` (B, N, d)
        are a frozen encoder's cached output for ``images`` (stage 1), used instead of
        encoding them again.
        """
        cfg = self.config
        if features is not None and cfg.distill_weight > 0:
            raise ValueError(
                "cached features come from a frozen encoder; distillation needs it live"
            )
        out = model(images, clamp=False, features=features)
        recon = out.recon.float()
        target = images.float()
        l2 = F.mse_loss(recon, target)
        rec_loss = cfg.l2_weight * l2
        metrics: dict[str, torch.Tensor] = {"l2": l2.detach()}
        if cfg.perceptual_weight > 0:
            crop_recon, crop_target = self._perceptual_window(recon, target, step)
            perceptual = self.perceptual(crop_recon, crop_target).mean()
            rec_loss = rec_loss + cfg.perceptual_weight * perceptual
            metrics["lpips"] = perceptual.detach()
        if cfg.ssim_weight > 0:
            structure = ssim_from_tensors(recon, target, data_range=1.0).mean()
            rec_loss = rec_loss + cfg.ssim_weight * (1 - structure)
            metrics["ssim"] = structure.detach()
        quant = out.quantizer.loss
        loss = rec_loss + cfg.quantizer_weight * quant
        metrics["quant"] = quant.detach()
        metrics["commit"] = out.quantizer.commitment_loss.detach()
        if cfg.distill_weight > 0:
            with torch.no_grad():
                target_features = self.teacher(_unwrap(model).encoder_input(images)).float()
            distill = F.mse_loss(out.features.float(), target_features)
            loss = loss + cfg.distill_weight * distill
            metrics["distill"] = distill.detach()
        if self.gan_active(step):
            g_loss = -self.discriminator(recon).mean()
            weight = torch.tensor(cfg.gan_weight, device=recon.device)
            if cfg.adaptive_gan_weight:
                weight = weight * self._adaptive_weight(model, rec_loss, g_loss)
            loss = loss + weight * g_loss
            metrics["gan_g"] = g_loss.detach()
            metrics["gan_weight"] = weight.detach()
        metrics["loss"] = loss.detach()
        return ObjectiveOutput(
            loss=loss,
            metrics=metrics,
            recon=out.recon.detach(),
            indices=out.indices.detach(),
        )

    def _perceptual_window(
        self, recon: torch.Tensor, target: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.config.perceptual_crop
        height, width = target.shape[-2:]
        if size == 0 or (size >= height and size >= width):
            return recon, target
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        top = int(torch.randint(0, max(height - size, 0) + 1, (1,), generator=generator))
        left = int(torch.randint(0, max(width - size, 0) + 1, (1,), generator=generator))
        window = (..., slice(top, top + size), slice(left, left + size))
        return recon[window], target[window]

    def _adaptive_weight(
        self, model: nn.Module, rec_loss: torch.Tensor, g_loss: torch.Tensor
    ) -> torch.Tensor:
        last = _unwrap(model).decoder.head.weight
        rec_grad = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
        g_grad = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
        return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()

    def discriminator_loss(
        self, images: torch.Tensor, recon: torch.Tensor, step: int
    ) -> ObjectiveOutput:
        """Hinge + LeCam loss of the discriminator on real images and detached reconstructions."""
        if not self.gan_active(step):
            raise RuntimeError("the discriminator is not active at this step")
        real_logits = self.discriminator(images.float())
        fake_logits = self.discriminator(recon.detach().float())
        loss = hinge_d_loss(real_logits, fake_logits)
        metrics: dict[str, torch.Tensor] = {"gan_d": loss.detach()}
        if self.config.lecam_weight > 0:
            lecam = self.lecam(real_logits, fake_logits)
            loss = loss + self.config.lecam_weight * lecam
            self.lecam.update(real_logits, fake_logits)
            metrics["lecam"] = lecam.detach()
        metrics["logits_real"] = real_logits.detach().mean()
        metrics["logits_fake"] = fake_logits.detach().mean()
        return ObjectiveOutput(loss=loss, metrics=metrics, recon=recon, indices=torch.empty(0))


def _unwrap(model: nn.Module) -> VQRAE:
    """The VQRAE inside DDP / FSDP / torch.compile wrappers."""
    while not isinstance(model, VQRAE):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            raise TypeError(f"cannot find a VQRAE inside {type(model).__name__}")
        model = inner
    return model
