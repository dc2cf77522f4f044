"""vqrae.utils.files.atomic_write: all-or-nothing writes with ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from vqrae.utils.files import atomic_write


def test_atomic_write_replaces_whole_files_with_umask_permissions(tmp_path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    old_mask = os.umask(0o022)
    try:
        atomic_write(target, lambda p: p.write_text("new"))
    finally:
        os.umask(old_mask)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644

    def fail(path) -> None:
        path.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left
