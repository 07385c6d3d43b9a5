"""``qwen3-rerank rerank``: its arguments, and how documents from a file or stdin are ranked
and printed (JSON lines or a table)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from ..documents import parse_documents, read_documents
from ..results import RerankResult
from .common import (
    UsageError,
    add_engine_arguments,
    add_remote_arguments,
    build_reranker,
    positive_int,
    quiet_transformers,
    unit_float,
)

__all__ = ["add_command", "run"]


def add_command(commands: Any) -> None:
    rerank = commands.add_parser(
        "rerank",
        help="rank documents from a file or stdin against a query",
        description="Rank documents (one per line, or JSONL with --jsonl) against a query, "
        "with a local model (--model) or on a rerank server (--url). Blank lines are skipped; "
        "'index' counts the documents read, from 0.",
    )
    rerank.add_argument("file", nargs="?", default="-", help="documents file, or - for stdin")
    rerank.add_argument("--query", "-q", required=True, help="the search query")
    rerank.add_argument("--instruction", help="task instruction (default: web search)")
    rerank.add_argument("--top-n", type=positive_int, help="keep the N best documents")
    rerank.add_argument("--threshold", type=unit_float, help="keep scores >= T (0..1)")
    rerank.add_argument("--jsonl", action="store_true", help="input lines are JSON objects")
    rerank.add_argument(
        "--text-field",
        default="text",
        help="with --jsonl: the field holding each document's text (an 'id' field, if any, "
        "is copied to the output)",
    )
    rerank.add_argument("--format", choices=("jsonl", "table"), default="jsonl")
    rerank.add_argument("--quiet", action="store_true", help="no progress bar")
    add_remote_arguments(rerank, "score on this rerank server instead of a local model")
    add_engine_arguments(rerank, model_required=False)
    rerank.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise UsageError("--query must not be empty")
    if args.file == "-" and sys.stdin.isatty():
        print(
            "qwen3-rerank: reading documents from stdin, one per line; end with Ctrl-D "
            "(or give a file: qwen3-rerank rerank ... docs.txt)",
            file=sys.stderr,
        )
    records = _read_documents(args.file, args.jsonl, args.text_field)
    if not records:
        where = "stdin" if args.file == "-" else args.file
        raise UsageError(f"{where} has no documents (every line is blank)")
    show_progress = not args.quiet and sys.stderr.isatty()
    if not show_progress:
        quiet_transformers()
    from tqdm import tqdm

    with (
        build_reranker(args) as rr,
        tqdm(total=len(records), unit="doc", file=sys.stderr, disable=not show_progress) as bar,
    ):
        results = rr.rerank(
            args.query,
            [text for text, _ in records],
            top_n=args.top_n,
            score_threshold=args.threshold,
            instruction=args.instruction,
            progress=bar.update,
        )
    ids = [record_id for _, record_id in records]
    if args.format == "table":
        _print_table(results, sys.stdout)
    else:
        for rank, r in enumerate(results, 1):
            line: dict[str, Any] = {"rank": rank, "index": r.index, "score": r.score}
            if ids[r.index] is not None:
                line["id"] = ids[r.index]
            line.update(document=r.document, truncated=r.truncated)
            print(json.dumps(line, ensure_ascii=False))
    return 0


def _read_documents(file: str, jsonl: bool, field: str) -> list[tuple[str, Any]]:
    """(text, id-or-None) per non-blank line of ``file`` (``-``: stdin)."""
    if file == "-":
        return parse_documents(sys.stdin.buffer.read(), jsonl, field, "stdin")
    return read_documents(file, jsonl, field)


def _print_table(results: list[RerankResult], out: TextIO) -> None:
    out.write(f"{'rank':>4}  {'index':>5}  {'score':>8}  document\n")
    for rank, r in enumerate(results, 1):
        text = " ".join(r.document.split())
        text = text if len(text) <= 70 else text[:69] + "…"
        mark = " [truncated]" if r.truncated else ""
        out.write(f"{rank:>4}  {r.index:>5}  {r.score:>8.5f}  {text}{mark}\n")
