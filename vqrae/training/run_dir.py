"""The run folder every trainer writes: the merged recipe and a record of what ran.

OUT/config.yaml   the merged recipe (after stages, base files and --set overrides)
OUT/run.json      git revision, world size, device, precision and trainer facts
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from vqrae.utils.files import atomic_write
from vqrae.utils.runtime import git_revision

__all__ = ["write_run_files"]


def write_run_files(out: Path, config: dict[str, Any], record: dict[str, Any]) -> None:
    """Write ``config.yaml`` and ``run.json`` (``record`` plus the git revision) atomically."""
    out.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config, sort_keys=False)
    atomic_write(out / "config.yaml", lambda p: p.write_text(text))
    facts = {"git_revision": git_revision(), **record}
    body = json.dumps(facts, indent=2, default=str) + "\n"
    atomic_write(out / "run.json", lambda p: p.write_text(body))
