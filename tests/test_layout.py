"""The rooms of the package import one way (DESIGN.md): utils <- data <- tokenizer <- llm <-
{generation, mllm} <- cli; eval's scorers import nothing above data; no room imports a later one.

Every import statement counts, including the deferred ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vqrae

PACKAGE = Path(vqrae.__file__).parent

# room -> the rooms it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "utils": set(),
    "assets": {"utils"},
    "data": {"utils"},
    "training": {"utils", "data"},
    "eval": {"utils", "data", "assets"},
    "convert": {"utils", "assets", "eval"},
    "tokenizer": {"utils", "data", "assets", "eval", "training"},
    "llm": {"utils", "data", "assets", "training", "tokenizer"},
    "generation": {"utils", "data", "assets", "eval", "training", "tokenizer", "llm"},
    "mllm": {"utils", "data", "assets", "eval", "training", "tokenizer", "llm"},
    "cli": {
        "utils", "data", "assets", "eval", "training", "tokenizer", "llm", "generation", "mllm",
    },
}  # fmt: skip


def _room(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "vqrae" or parts[1].startswith("_"):
        return None  # not a room: another package, or vqrae.__version__
    return parts[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "vqrae":  # from vqrae import assets
                found |= {f"vqrae.{alias.name}" for alias in node.names}
    return found


def test_every_room_is_known() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms <= set(ALLOWED), sorted(rooms - set(ALLOWED))


def test_imports_run_one_way() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        room = _room(".".join(relative.parts))
        if room is None or room not in ALLOWED:
            continue
        for module in _imports(path):
            target = _room(module)
            if target is not None and target != room and target not in ALLOWED[room]:
                wrong.append(f"{relative}: imports {module}")
    assert not wrong, "\n".join(wrong)


def test_no_path_is_computed_from_the_package_to_the_repository() -> None:
    offenders = [
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*.py")
        if "parents[1]" in p.read_text() or "parents[2]" in p.read_text()
    ]
    assert not offenders
