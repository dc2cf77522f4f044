"""The ``vqrae`` command: one module per command group, each subcommand a typed function.

``vqrae CMD --help`` shows a command's flags (its function's signature and docstring). Errors a
user can cause print one line, ``vqrae CMD: error: ...``, and exit non-zero without a traceback;
``VQRAE_DEBUG=1`` shows the traceback of unexpected failures.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from vqrae.cli import assets, data, demo, eval, generation, mllm, tokenizer
from vqrae.cli.common import CommandError, print_error, set_command

__all__ = ["build_parser", "main"]

GROUPS = (tokenizer, demo, eval, data, generation, mllm, assets)
_PARSER_KEYS = ("command", "subcommand", "verbose")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every group's commands."""
    parser = argparse.ArgumentParser(prog="vqrae", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vqrae`` command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    set_command(" ".join(filter(None, [args.command, getattr(args, "subcommand", None)])))
    kwargs = {
        k: v for k, v in vars(args).items() if not k.startswith("_") and k not in _PARSER_KEYS
    }
    try:
        return int(args._fn(**kwargs) or 0)
    except CommandError as exc:
        print_error(str(exc))
        return 1
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets one line, developers VQRAE_DEBUG=1
        if os.environ.get("VQRAE_DEBUG"):
            raise
        print_error(f"{type(exc).__name__}: {exc} (set VQRAE_DEBUG=1 for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
