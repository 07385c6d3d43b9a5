"""The ``qwen3-rerank`` command line: the parser of all its subcommands, and how a run becomes
an exit code.

Exit codes: 0 success, 2 bad input or configuration (one line on stderr, no traceback),
1 engine failure, 130 interrupted.

Each subcommand's arguments and run live in its own module (``rerank``, ``serve``, ``batch``,
``ui``, ``bench``, ``make_model``); what several of them share is in ``common``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import (
    ConfigurationError,
    InvalidInputError,
    MissingDependencyError,
    Qwen3RerankError,
)
from . import batch, bench, make_model, rerank, serve, ui
from .common import CliParser, UsageError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except (
        UsageError,
        InvalidInputError,
        ConfigurationError,
        MissingDependencyError,
        OSError,
    ) as exc:
        print(f"qwen3-rerank: error: {exc}", file=sys.stderr)
        return 2
    except Qwen3RerankError as exc:
        print(f"qwen3-rerank: engine error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("qwen3-rerank: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (the docs' CLI reference is generated from it)."""
    parser = CliParser(prog="qwen3-rerank", description="Rerank documents with Qwen3-Reranker.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CliParser
    )
    for command in (rerank, serve, batch, ui, bench, make_model):
        command.add_command(commands)
    return parser
