"""``qwen3-rerank ui``: its arguments, and how it serves the Gradio page for a local model or a
remote server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import (
    UsageError,
    add_engine_arguments,
    add_remote_arguments,
    build_reranker,
    positive_int,
    quiet_transformers,
)

__all__ = ["add_command", "run"]


def add_command(commands: Any) -> None:
    ui = commands.add_parser(
        "ui",
        help="a web page to try the reranker (local model or remote server)",
        description="Serve a Gradio page: query, documents, instruction, top-n, threshold in; "
        "a ranked table with score bars out. Give --model for a local engine or --url for a "
        "remote rerank server.",
    )
    add_remote_arguments(ui, "remote rerank server instead of a local model")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=positive_int, default=7860)
    add_engine_arguments(ui, model_required=False)
    ui.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.model is None) == (args.url is None):
        raise UsageError("give either --model (local engine) or --url (remote server)")
    from ..ui import build_ui

    quiet_transformers()
    with build_reranker(args) as rr:
        demo = build_ui(rr)
        print(f"qwen3-rerank: page on http://{args.host}:{args.port}", file=sys.stderr)
        # quiet: Gradio's own lines would suggest share=True, which the CLI does not offer
        demo.launch(
            server_name=args.host, server_port=args.port, share=False, show_error=False, quiet=True
        )
    return 0
