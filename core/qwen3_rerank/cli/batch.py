"""``qwen3-rerank batch``: wires the Ray Data command (its own arguments and run live in
``qwen3_rerank.ray.cli``) to the shared engine and remote-server options."""

from __future__ import annotations

import argparse
from typing import Any

from ..ray.cli import add_batch_command
from .common import (
    UsageError,
    add_engine_arguments,
    add_remote_arguments,
    engine_options,
    refuse_options_with_url,
)

__all__ = ["add_command", "run"]


def add_command(commands: Any) -> None:
    batch = add_batch_command(commands)
    add_remote_arguments(batch, "score on this rerank server instead of a local model")
    add_engine_arguments(batch, model_required=False)
    batch.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.model is None) and (args.url is None):
        raise UsageError("give --model (a local engine) or --url (a rerank server)")
    refuse_options_with_url(args)
    from ..ray.cli import run_batch

    return run_batch(args, engine_options(args))
