"""The stage-2 teacher, sharing the student's frozen blocks when only its last blocks train.

With ``trainable_encoder_blocks: k`` the student's patch embedding and first ``n - k`` blocks
stay frozen at their pretrained values, so they compute exactly what the teacher's would. A
:class:`SharedPrefixTeacher` keeps the student's hidden state after those blocks (a forward
hook) and runs only the teacher's last ``k`` blocks on it, instead of the whole teacher: about
half of a stage-2 step's encoder work on the demo recipe.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from vqrae.tokenizer.encoders import VFMEncoder

__all__ = ["SharedPrefixTeacher", "frozen_prefix_matches"]

log = logging.getLogger(__name__)


def _prefix_tensors(encoder: VFMEncoder, start: int) -> dict[str, torch.Tensor]:
    """Every parameter and buffer that the encoder uses before block ``start``."""
    prefix = {
        name: tensor
        for name, tensor in encoder.state_dict().items()
        if not name.startswith(("blocks.", "norm."))
    }
    for index in range(start):
        for name, tensor in encoder.blocks[index].state_dict().items():
            prefix[f"blocks.{index}.{name}"] = tensor
    return prefix


def frozen_prefix_matches(student: VFMEncoder, teacher: VFMEncoder, start: int) -> bool:
    """Whether the student's embedding and blocks before ``start`` equal the teacher's."""
    ours, theirs = _prefix_tensors(student, start), _prefix_tensors(teacher, start)
    return ours.keys() == theirs.keys() and all(
        ours[name].shape == theirs[name].shape
        and torch.equal(ours[name].detach().cpu(), theirs[name].detach().cpu())
        for name in ours
    )


class SharedPrefixTeacher(nn.Module):
    """A frozen teacher that starts from the student's hidden state at block ``start``.

    Args:
        teacher: the original encoder.
        student: the encoder being trained; its blocks before ``start`` must be frozen and equal
            to the teacher's (:func:`frozen_prefix_matches`). It is hooked, not held: it does not
            become a submodule.
        start: the first trainable block of the student.

    Call it on the encoder input of the images the student has just encoded, as the objective
    does; without a kept hidden state of that batch size it runs the whole teacher.
    """

    def __init__(self, teacher: VFMEncoder, student: VFMEncoder, start: int) -> None:
        super().__init__()
        if not 1 <= start <= len(student.blocks):
            raise ValueError(f"start must be in [1, {len(student.blocks)}], got {start}")
        self.teacher = teacher
        self.start = start
        self._hidden: torch.Tensor | None = None
        self._hook = student.blocks[start - 1].register_forward_hook(self._keep)

    def _keep(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        self._hidden = output.detach()  # (B, prefix + N, d)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden, self._hidden = self._hidden, None
        if hidden is None or hidden.shape[0] != images.shape[0]:
            return self.teacher(images)
        return self.teacher.forward_from(hidden, self.start)

    def remove(self) -> None:
        """Detach the hook from the student."""
        self._hook.remove()
