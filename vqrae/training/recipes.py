"""YAML recipes: a ``base:`` file, per-stage sections, ``--set`` overrides, typed configs.

A recipe is merged in this order, later winning, mappings merged key by key:

1. its ``base:`` file (a path relative to the recipe; bases may have bases), so recipes that
   share a setup state only what differs;
2. the recipe's top level;
3. the chosen stage's section under ``stages: {1: {...}, 2: {...}}``;
4. ``--set key.sub=value`` overrides (values parsed as YAML scalars).

:func:`build_config` then turns the merged mapping into a typed dataclass; an unknown key is an
error that names it, and YAML strings such as ``4e-4`` become the field's number type.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["build_config", "deep_merge", "load_recipe", "parse_set_overrides", "read_recipe"]

T = TypeVar("T")


def read_recipe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A recipe file merged over its chain of ``base:`` files (stages not yet chosen).

    Raises:
        ValueError: a missing file, invalid YAML, a non-mapping, or a cycle of bases.
    """
    chain: list[Path] = []
    current: Path | None = Path(path)
    layers: list[dict[str, Any]] = []
    while current is not None:
        resolved = current.resolve()
        if resolved in chain:
            names = " -> ".join(str(p) for p in [*chain, resolved])
            raise ValueError(f"recipe bases form a cycle: {names}")
        chain.append(resolved)
        data = _read_yaml(current)
        base = data.pop("base", None)
        layers.append(data)
        current = (current.parent / str(base)) if base else None
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        merged = deep_merge(merged, layer)
    return merged


def load_recipe(
    path: str | os.PathLike[str], stage: int | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Read a recipe and merge its bases, the chosen stage's section and ``--set`` overrides.

    Args:
        path: the YAML file.
        stage: which ``stages:`` section to apply; default the recipe's own ``stage`` (else 1).
            The result's ``stage`` is the chosen one. Recipes without stages ignore it.
        overrides: ``["optim.lr=1e-4", "steps=10"]``.
    """
    raw = read_recipe(path)
    stages = raw.pop("stages", None) or {}
    if stages or stage is not None or "stage" in raw:
        chosen = stage if stage is not None else int(raw.get("stage", 1))
        section = stages.get(chosen, stages.get(str(chosen), {})) or {}
        raw = deep_merge(raw, section)
        raw["stage"] = chosen
    return deep_merge(raw, parse_set_overrides(overrides or []))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ValueError(f"config file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``; nested mappings are merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_set_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=1e-4", "steps=10"]`` -> nested dict (values parsed as YAML scalars)."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return result


def build_config(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Instantiate dataclass ``cls`` from a nested dict, naming unknown keys."""
    if not isinstance(data, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(prefix + k for k in unknown)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build_config(hint, value, prefix + key + ".")
        else:
            kwargs[key] = _coerce(value, hint, prefix + key)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert YAML scalars to the field's type (YAML reads ``4e-4`` as a string)."""
    options = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    if value is None or any(
        isinstance(value, t) for t in options if isinstance(t, type) and t is not float
    ):
        return value
    for target in (int, float):
        if (
            target in options
            and isinstance(value, (str, int, float))
            and not isinstance(value, bool)
        ):
            try:
                converted = target(value)
            except ValueError:
                continue
            if target is int and isinstance(value, float) and converted != value:
                continue
            return converted
    if isinstance(value, str) and any(t in options for t in (int, float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return value
