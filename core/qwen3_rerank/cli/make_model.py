"""``qwen3-rerank make-model``: its arguments, and how it saves a random-weight model folder
(leaving none behind when it fails)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_command", "run"]


def add_command(commands: Any) -> None:
    make = commands.add_parser(
        "make-model",
        help="build a random-weight Qwen3-Reranker-shaped model (for offline tests/benchmarks)",
        description="Save a random-weight Qwen3ForCausalLM with the real Qwen3 tokenizer "
        "(needs the [dev] extra). Scores are meaningless; compute and tokens are real.",
    )
    make.add_argument("path", help="output folder")
    make.add_argument("--size", choices=("tiny", "0.6b", "4b", "8b"), default="tiny")
    make.add_argument("--seed", type=int, default=0)
    make.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from ..random_model import build_random_model

    folder = Path(args.path)
    existed = folder.exists()
    try:
        print(build_random_model(folder, args.size, seed=args.seed))
    except BaseException:
        if not existed:  # a half-made model folder would look like a model to the next command
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return 0
