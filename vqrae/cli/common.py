"""What every command shares: the user-facing error, run records, model loading, flag checks.

Errors a user can cause (missing files, bad images, unknown models, bad flags) raise
:class:`CommandError`; :func:`vqrae.cli.main` prints them as one line,
``vqrae CMD: error: ...``, and exits non-zero without a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from vqrae.data.sources import ImageSource
    from vqrae.tokenizer.model import VQRAE

DEFAULT_TOKENIZER = "vqrae-dinov2-s-demo"  # the trained demo tokenizer the package ships
DEVICE_HELP = '"auto", "cpu", "cuda" or "cuda:N"'


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


_state = {"command": ""}  # the running subcommand, named in error lines (set by main)


def set_command(name: str) -> None:
    """Name the running subcommand for :func:`print_error`."""
    _state["command"] = name


def print_error(message: str) -> None:
    """Print ``vqrae CMD: error: MESSAGE`` on standard error."""
    command = _state["command"]
    prefix = f"vqrae {command}: error:" if command else "vqrae: error:"
    print(f"{prefix} {message}", file=sys.stderr, flush=True)


def write_run_record(out_dir: Path, command: str, args: dict[str, Any]) -> Path:
    """Write ``vqrae_run.json`` (command, arguments, version, git revision) beside outputs."""
    from vqrae import __version__
    from vqrae.utils.files import atomic_write
    from vqrae.utils.runtime import git_revision

    record = {
        "command": command,
        "arguments": args,
        "vqrae_version": __version__,
        "git_revision": git_revision(),
    }
    path = out_dir / "vqrae_run.json"
    text = json.dumps(record, indent=2, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def load_tokenizer(name_or_dir: str, device: str = "auto") -> tuple[VQRAE, torch.device]:
    """A trained VQRAE (checkpoint directory or trained name), in eval mode on ``device``."""
    from vqrae import assets
    from vqrae.tokenizer.model import VQRAE
    from vqrae.utils.runtime import resolve_device

    target = resolve_device(device)
    try:
        model = VQRAE.from_pretrained(name_or_dir)
    except (ValueError, FileNotFoundError, assets.AssetError) as exc:
        raise CommandError(str(exc)) from None
    return model.to(target).eval(), target


def check_positive(flag: str, value: int | float | None) -> None:
    """Reject a count flag below 1 (``None`` means unset)."""
    if value is not None and value < 1:
        raise CommandError(f"{flag} must be >= 1, got {value}")


def open_data(data: str, split: str | None) -> ImageSource:
    """An image source (folder, saved dataset, hf:NAME) with at least one item."""
    from vqrae.data.sources import SourceError, open_source

    try:
        source = open_source(data, split=split)
    except SourceError as exc:
        raise CommandError(str(exc)) from None
    if len(source) == 0:
        raise CommandError(f"{data}: no images found")
    return source


def open_files(inputs: list[str]) -> ImageSource:
    """The image files named or found (recursively) under ``inputs``, at least one."""
    from vqrae.data.images import ImageReadError
    from vqrae.data.sources import FileListSource

    try:
        source = FileListSource(inputs)
    except ImageReadError as exc:
        raise CommandError(str(exc)) from None
    if len(source) == 0:
        raise CommandError("no images found in the given paths")
    return source


def report_failure(record: Any) -> None:
    """Print an unreadable item's one-line error without breaking a progress bar."""
    from tqdm.auto import tqdm

    command = _state["command"]
    tqdm.write(f"vqrae {command}: error: {record.name}: {record.error}", file=sys.stderr)
