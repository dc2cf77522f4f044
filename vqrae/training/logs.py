"""What a trainer shows and records while it runs: a progress bar and TensorBoard scalars.

Both exist on the main process only; elsewhere they are ``None`` and callers skip them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["open_tensorboard", "progress_bar"]

log = logging.getLogger(__name__)


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any | None:
    """A tqdm bar from ``initial`` to ``total`` steps (it shows the rate and the ETA)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def open_tensorboard(log_dir: Path, enabled: bool) -> Any | None:
    """A TensorBoard ``SummaryWriter`` on ``log_dir``, or None when disabled or not installed."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed; scalars go to the progress bar only")
        return None
    return SummaryWriter(str(log_dir))
