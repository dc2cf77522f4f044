"""Typed functions become subcommands: signature -> flags, docstring -> help.

A subcommand is a plain function with annotated parameters and a Google-style docstring:
parameters without a default become positional arguments (keyword-only ones: required
``--flags``), the others ``--flags`` (underscores
become dashes); ``bool`` gives ``--flag/--no-flag``; ``list[X]`` takes one or more values;
``X | None`` accepts X. Help texts come from the ``Args:`` section.
"""

from __future__ import annotations

import argparse
import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["add_function_command", "command_group", "parse_docstring"]


def parse_docstring(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """Return (description, {param: help}) from a Google-style docstring."""
    doc = inspect.getdoc(fn) or ""
    description, _, rest = doc.partition("\nArgs:\n")
    helps: dict[str, str] = {}
    current = None
    for line in rest.splitlines():
        match = re.match(r"^\s{4}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if match:
            current = match.group(1)
            helps[current] = match.group(2).strip()
        elif current and line.startswith(" " * 8):
            helps[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break  # another section (Returns:, Raises:, ...)
    return description.strip(), helps


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def add_function_command(
    subparsers: argparse._SubParsersAction, name: str, fn: Callable[..., Any]
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` whose flags mirror ``fn``'s signature; stores ``fn`` as ``_fn``."""
    description, helps = parse_docstring(fn)
    summary = description.split("\n\n")[0].replace("\n", " ")
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hints = typing.get_type_hints(fn)
    for param in inspect.signature(fn).parameters.values():
        annotation = _unwrap_optional(hints.get(param.name, str))
        is_list = typing.get_origin(annotation) is list
        item_type = typing.get_args(annotation)[0] if is_list else annotation
        kwargs: dict[str, Any] = {"help": helps.get(param.name, "")}
        required = param.default is inspect.Parameter.empty
        if required and param.kind is not inspect.Parameter.KEYWORD_ONLY:
            kwargs.update(
                type=item_type, nargs="+" if is_list else None, metavar=param.name.upper()
            )
            parser.add_argument(param.name, **kwargs)
            continue
        flag = "--" + param.name.replace("_", "-")
        if annotation is bool:
            kwargs.update(action=argparse.BooleanOptionalAction, default=param.default)
        else:
            default = None if required else param.default
            kwargs.update(type=item_type, default=default)
            if is_list:  # repeatable: --set a=1 --set b=2 or --set a=1 b=2
                kwargs.update(nargs="+", action="extend")
            kwargs.update(metavar=param.name.upper().replace("_", "-"), required=required)
            if default is not None and not is_list:
                kwargs["help"] += f" (default: {param.default})"
        parser.add_argument(flag, dest=param.name, **kwargs)
    parser.set_defaults(_fn=fn, _command=name)
    return parser


def command_group(
    subparsers: argparse._SubParsersAction, name: str, help: str
) -> argparse._SubParsersAction:
    """The actions of group ``name`` (``vqrae NAME ACTION``), created on first use.

    Several command modules may add actions to one group (``vqrae geneval score`` lives with the
    scorers, ``vqrae geneval generate`` with the generator); the parsed action is ``subcommand``.
    """
    existing = subparsers.choices.get(name)
    if existing is not None:
        return existing._vqrae_actions  # type: ignore[attr-defined]
    parser = subparsers.add_parser(name, help=help, description=help)
    actions = parser.add_subparsers(dest="subcommand", metavar="ACTION", required=True)
    parser._vqrae_actions = actions  # type: ignore[attr-defined]
    return actions
