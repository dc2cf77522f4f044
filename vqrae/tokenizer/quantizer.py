"""SimVQ: vector quantization through a frozen random codebook and a learnable linear map.

SimVQ (Zhu et al., 2024) keeps the codebook ``C`` (k x e) frozen at its random initialisation
``N(0, e^-1/2)`` and learns a linear map ``W`` (e x e); the effective codebook is ``W(C) = C W^T``.
Because every code moves whenever ``W`` moves, the whole codebook stays in use even at large
``k`` and ``e``, which is what lets VQRAE quantize high-dimensional VFM features.

Numerics follow DESIGN.md:

* nearest code by squared L2 distance, computed in float32 even under autocast (an fp32 island),
  in chunks of tokens so the (tokens x k) distance matrix never exceeds a fixed budget;
* the projected codebook ``W(C)`` and its squared norms are cached while the module is not
  training (invalidated when ``W`` changes), which removes a k x e x e product per call;
* the loss is ``||sg(z) - z_q||^2 + beta ||z - sg(z_q)||^2`` (the first term trains ``W``, the
  second commits the input); the straight-through output equals ``z_q`` bit for bit;
* decoding from indices goes through the projected codebook ``W(C)``, never the raw ``C``.

Codes that the data stops visiting can be restarted (:meth:`SimVQ.restart_codes`): their frozen
rows of ``C`` are re-drawn so that ``W(C)`` places them on recent input vectors. Gradients still
never reach ``C``; the restart is an explicit, seeded data-dependent re-initialisation of dead
rows, like the calibration that placed them at the start.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["QuantizerOutput", "SimVQ"]


@dataclass
class QuantizerOutput:
    """What :class:`SimVQ` returns.

    Attributes:
        codes: quantized vectors with a straight-through gradient to the input, (B, N, e).
            Their values equal ``indices_to_codes(indices)`` exactly.
        indices: index of the nearest code for every token, (B, N), int64.
        loss: ``codebook_loss + beta * commitment_loss`` (scalar).
        codebook_loss: ``||sg(z) - z_q||^2`` averaged over elements (trains ``W``).
        commitment_loss: ``||z - sg(z_q)||^2`` averaged over elements (trains the input side).
    """

    codes: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


def _fp32_island(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast so the enclosed ops run in the precision of their (fp32) inputs."""
    if device.type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()  # e.g. the meta device, which has no autocast


def _default_chunk_size(codebook_size: int, max_elements: int = 1 << 24) -> int:
    """Tokens per distance chunk so that a (chunk x k) fp32 matrix stays under ``max_elements``."""
    return max(1, max_elements // codebook_size)


class SimVQ(nn.Module):
    """SimVQ quantizer over ``dim``-dimensional vectors.

    Args:
        codebook_size: number of codes ``k``.
        dim: code dimension ``e`` (the input's last dimension).
        beta: weight of the commitment term (0.25 in the paper).
        chunk_size: tokens per nearest-neighbour chunk; ``None`` picks a size that bounds the
            distance matrix at 2^24 elements (64 MiB in fp32).
        codebook_seed: seed of the frozen random codebook (it is also saved with the weights).
        track_usage: count how often each code is picked during training (all-reduced across
            processes when ``torch.distributed`` is initialised).
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        beta: float = 0.25,
        chunk_size: int | None = None,
        codebook_seed: int = 0,
        track_usage: bool = True,
    ) -> None:
        super().__init__()
        if codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.codebook_size = codebook_size
        self.dim = dim
        self.beta = beta
        self.chunk_size = chunk_size or _default_chunk_size(codebook_size)
        self.track_usage = track_usage

        self.register_buffer("codebook", self._random_codebook(codebook_seed), persistent=True)
        self.codebook_transform = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.codebook_transform.weight)  # W starts as identity: W(C) = C
        self.register_buffer(
            "usage_counts", torch.zeros(codebook_size, dtype=torch.long), persistent=False
        )
        self._cache: tuple[tuple[int, int, torch.device], torch.Tensor, torch.Tensor] | None = None
        # Restart candidates: the (T, e) inputs of the last training call, kept only when asked
        # (a reference held between steps; at paper scale it is hundreds of MB).
        self.keep_last_input = False
        self.last_input: torch.Tensor | None = None

    def _random_codebook(self, seed: int) -> torch.Tensor:
        if torch.empty(0).device.type == "meta":  # constructed under a meta device context
            return torch.empty(self.codebook_size, self.dim)
        generator = torch.Generator().manual_seed(seed)
        codebook = torch.randn(self.codebook_size, self.dim, generator=generator)
        return codebook * self.dim**-0.5  # (k, e)

    # ------------------------------------------------------------------ codebook views
    def _project(self, codebook: torch.Tensor) -> torch.Tensor:
        return F.linear(codebook.float(), self.codebook_transform.weight.float())

    def projected_codebook(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``W(C)`` (k, e) and its squared row norms (k,), in float32.

        Outside training the pair is cached and rebuilt only when ``W`` changes (tracked by the
        tensor's version counter, data pointer and device).
        """
        weight = self.codebook_transform.weight
        key = (weight.data_ptr(), weight._version, weight.device)
        if not self.training and self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        with torch.no_grad():
            projected = self._project(self.codebook)  # (k, e)
            sq_norms = projected.pow(2).sum(dim=1)  # (k,)
        if not self.training:
            self._cache = (key, projected, sq_norms)
        else:
            self._cache = None
        return projected, sq_norms

    def codebook_changed(self) -> None:
        """Drop the cached ``W(C)``: call after writing ``codebook`` in place (a broadcast, a
        calibration). Changes to ``W`` itself are detected without it."""
        self._cache = None

    @torch.no_grad()
    def set_codebook(self, codebook: torch.Tensor, reset_transform: bool = False) -> None:
        """Replace the frozen codebook C (k, e); with ``reset_transform`` W becomes the identity."""
        if codebook.shape != self.codebook.shape:
            raise ValueError(
                f"codebook must have shape {tuple(self.codebook.shape)}, got {tuple(codebook.shape)}"
            )
        self.codebook.copy_(codebook.to(self.codebook))
        if reset_transform:
            nn.init.eye_(self.codebook_transform.weight)
        self.codebook_changed()

    def _apply(self, fn, recurse=True):  # device / dtype moves invalidate the cache
        self.codebook_changed()
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------ lookup
    @torch.no_grad()
    def nearest_indices(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared L2) for each vector of ``z`` (..., e) -> (...)."""
        with _fp32_island(z.device):
            flat = z.detach().reshape(-1, self.dim).float()  # (T, e)
            projected, sq_norms = self.projected_codebook()
            indices = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
            for start in range(0, flat.shape[0], self.chunk_size):
                chunk = flat[start : start + self.chunk_size]  # (t, e)
                # ||z||^2 is constant per row, so argmin(||c||^2 - 2 z.c) is the nearest code.
                dist_part = torch.addmm(sq_norms, chunk, projected.t(), beta=1.0, alpha=-2.0)
                indices[start : start + chunk.shape[0]] = dist_part.argmin(dim=1)
        return indices.reshape(z.shape[:-1])

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Look up codes through the projected codebook ``W(C)``: (...) -> (..., e), float32."""
        if self.training and torch.is_grad_enabled():
            return self._project(self.codebook[indices])  # differentiable w.r.t. W
        projected, _ = self.projected_codebook()
        return projected[indices]

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize ``z`` (B, N, e) (any leading shape works) to its nearest codes."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"expected last dimension {self.dim}, got shape {tuple(z.shape)}")
        with _fp32_island(z.device):
            z = z.float()
            indices = self.nearest_indices(z)  # (B, N)
            # In training, W(C)[i] is computed as W(C[i]): same value, but the gradient to W
            # costs (tokens x e x e) instead of (k x e x e).
            quantized = self.indices_to_codes(indices)  # (B, N, e)
            codebook_loss = F.mse_loss(quantized, z.detach())
            commitment_loss = F.mse_loss(z, quantized.detach())
            loss = codebook_loss + self.beta * commitment_loss
            # Straight-through: value is exactly `quantized`, gradient is the identity to z.
            codes = quantized.detach() + (z - z.detach())
        if self.training and self.track_usage:
            self._update_usage(indices)
            if self.keep_last_input:
                self.last_input = z.detach().reshape(-1, self.dim)
        return QuantizerOutput(
            codes=codes,
            indices=indices,
            loss=loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
        )

    # ------------------------------------------------------------------ usage statistics
    @torch.no_grad()
    def _update_usage(self, indices: torch.Tensor) -> None:
        flat = indices.reshape(-1)
        counts = torch.zeros_like(self.usage_counts).scatter_add_(0, flat, torch.ones_like(flat))
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
        self.usage_counts += counts

    @torch.no_grad()
    def restart_codes(
        self, dead: torch.Tensor, candidates: torch.Tensor, generator: torch.Generator
    ) -> int:
        """Move the codes flagged in ``dead`` (k,) bool onto input vectors drawn from
        ``candidates`` (T, e) (without replacement while there are enough of them).

        The frozen rows are solved from ``W C_i^T = z^T`` so that the effective code ``W(C)_i``
        equals the drawn vector. Returns the number of codes moved (0 when ``W`` is singular).
        """
        index = dead.nonzero().reshape(-1)
        if index.numel() == 0 or candidates.shape[0] == 0:
            return 0
        flat = candidates.detach().reshape(-1, self.dim)
        if flat.shape[0] >= index.numel():
            pick = torch.randperm(flat.shape[0], generator=generator)[: index.numel()]
        else:
            pick = torch.randint(flat.shape[0], (index.numel(),), generator=generator)
        # Only the drawn rows leave the candidates' device (the generator draws on the CPU).
        targets = flat[pick.to(flat.device)].float().to(self.codebook.device)  # (n, e)
        weight = self.codebook_transform.weight.detach().float()  # (e, e)
        rows = torch.linalg.solve(weight, targets.T).T  # (n, e): rows @ W^T == targets
        if not torch.isfinite(rows).all():
            return 0
        self.codebook[index.to(self.codebook.device)] = rows.to(self.codebook.dtype)
        self.codebook_changed()
        return int(index.numel())

    def reset_usage(self) -> None:
        """Zero the code-usage counters."""
        self.usage_counts.zero_()

    def codebook_usage(self) -> float:
        """Fraction of codes picked at least once since the last reset."""
        return float((self.usage_counts > 0).float().mean())

    def extra_repr(self) -> str:
        return (
            f"codebook_size={self.codebook_size}, dim={self.dim}, beta={self.beta}, "
            f"chunk_size={self.chunk_size}"
        )
