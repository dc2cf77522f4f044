"""Exponential moving average of trained weights, shard-aware under FSDP."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Exponential moving average of the trainable parameters (fp32 copies).

    Under FSDP the copies are sharded like the parameters; :meth:`state_dict` gathers them
    (a collective call) and :meth:`load_state_dict` shards full tensors again.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = {n: params[n].detach().float().clone() for n in self.names}

    def decay_at(self, step: int) -> float:
        """The decay used after ``step`` optimizer steps: warmed up as ``(1 + t) / (10 + t)``
        so that short runs are not dominated by the initial weights."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        params = dict(model.named_parameters())
        torch._foreach_lerp_(
            [self.shadow[n] for n in self.names],
            [params[n].detach().float() for n in self.names],
            1.0 - self.decay_at(step),
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: _full(t).cpu() for n, t in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.names) - set(state)
        if missing:
            raise ValueError(f"EMA state is missing {sorted(missing)[:5]}")
        for name in self.names:
            self.shadow[name] = _like(state[name].float(), self.shadow[name])


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a (possibly sharded) DTensor; collective for DTensors."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _like(full: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``full`` placed like ``reference`` (sharded again when ``reference`` is a DTensor)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(reference, DTensor):
        return distribute_tensor(
            full.to(reference.device), reference.device_mesh, reference.placements
        )
    return full.to(reference.device).clone()
