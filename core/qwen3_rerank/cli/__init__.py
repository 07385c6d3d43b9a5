"""The ``qwen3-rerank`` command line.

Exit codes: 0 success, 2 bad input or configuration (one line on stderr, no traceback),
1 engine failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ..documents import parse_documents, read_documents
from ..errors import (
    ConfigurationError,
    InvalidInputError,
    MissingDependencyError,
    Qwen3RerankError,
)
from ..ray.cli import add_batch_command, add_serve_ray_arguments
from ..results import RerankResult
from ..workloads import CPU_WORKLOADS, GPU_WORKLOADS, WORKLOADS
from .common import (
    CliParser,
    UsageError,
    add_engine_arguments,
    add_remote_arguments,
    build_reranker,
    engine_options,
    positive_int,
    quiet_transformers,
    unit_float,
)

__all__ = ["build_parser", "main"]

API_KEY_ENV = "QWEN3_RERANK_API_KEY"


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
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CliParser
    )

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
    rerank.set_defaults(run=_run_rerank)

    serve = commands.add_parser(
        "serve",
        help="serve a rerank API that vLLM, Cohere, Jina, TEI and Infinity clients can use",
        description="Serve POST /v1/rerank (also /rerank, /v2/rerank), /v1/rerank/batch, "
        "/v1/score (also /score), GET /health, /v1/models, /metrics and /docs (OpenAPI). "
        "Requests arriving together are scored together. See docs/server.md.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=positive_int, default=8000)
    serve.add_argument(
        "--api-key",
        help=f"require 'Authorization: Bearer KEY' (better: the {API_KEY_ENV} environment "
        "variable or --api-key-file, which stay out of the process list)",
    )
    serve.add_argument("--api-key-file", help="read the API key from this file")
    serve.add_argument(
        "--served-model-name",
        nargs="+",
        help="names clients may send as 'model' (default: --model and its last path part)",
    )
    serve.add_argument("--max-documents", type=positive_int, default=1000, help="per request")
    serve.add_argument("--max-queue", type=positive_int, default=256, help="waiting requests")
    serve.add_argument(
        "--max-body-mb", type=positive_int, default=16, help="largest request body (MiB)"
    )
    serve.add_argument(
        "--max-connections",
        type=positive_int,
        default=512,
        help="open connections and requests at once; past it new ones get 503 (default 512)",
    )
    serve.add_argument(
        "--keep-alive-timeout",
        type=positive_int,
        default=5,
        help="seconds an idle keep-alive connection stays open (default 5)",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=positive_int,
        default=30,
        help="seconds in-flight requests get to finish at shutdown; past it they get 503",
    )
    serve.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no per-request log line on stderr",
    )
    add_engine_arguments(serve)
    add_serve_ray_arguments(serve)
    serve.set_defaults(run=_run_serve)

    batch = add_batch_command(commands)
    add_remote_arguments(batch, "score on this rerank server instead of a local model")
    add_engine_arguments(batch, model_required=False)
    batch.set_defaults(run=_run_batch)

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
    ui.set_defaults(run=_run_ui)

    bench = commands.add_parser(
        "bench",
        help="time the reranker on the benchmark workloads (pairs/s, latency, memory)",
        description="Time a local engine, or a rerank server with --url, on generated "
        "workloads, words from the model's tokenizer. On a GPU or a server: rag100x256 (4 "
        "queries x 100 documents of 256 tokens), mixed16x100 (16 x 100 of 32-1024 tokens), "
        "long16x4000 (1 x 16 of 4000 tokens); on a CPU: query20x256 and query50x256 (1 query x "
        "20 or 50 documents of 256 tokens), long4x2000 (1 x 4 of 2000 tokens). Throughput: "
        "the whole workload in one call, the best of --passes after warm-up calls; latency: "
        "one query at a time. Timed calls get fresh inputs.",
    )
    bench.add_argument(
        "--workload",
        "-w",
        action="append",
        choices=WORKLOADS,
        help="repeatable (default: the three of the device)",
    )
    bench.add_argument("--passes", type=positive_int, default=3, help="timed passes (3)")
    bench.add_argument(
        "--latency-queries",
        type=positive_int,
        help="queries timed alone (3 on a CPU, 12 elsewhere)",
    )
    bench.add_argument("--seed", type=int, default=0, help="seed of the first inputs (0)")
    add_remote_arguments(bench, "time this rerank server; --model names its model")
    bench.add_argument("--format", choices=("table", "json"), default="table")
    bench.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_engine_arguments(bench)
    bench.set_defaults(run=_run_bench)

    make = commands.add_parser(
        "make-model",
        help="build a random-weight Qwen3-Reranker-shaped model (for offline tests/benchmarks)",
        description="Save a random-weight Qwen3ForCausalLM with the real Qwen3 tokenizer "
        "(needs the [dev] extra). Scores are meaningless; compute and tokens are real.",
    )
    make.add_argument("path", help="output folder")
    make.add_argument("--size", choices=("tiny", "0.6b", "4b", "8b"), default="tiny")
    make.add_argument("--seed", type=int, default=0)
    make.set_defaults(run=_run_make_model)
    return parser


def _run_rerank(args: argparse.Namespace) -> int:
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


def _run_serve(args: argparse.Namespace) -> int:
    api_key = _serve_api_key(args)
    names = args.served_model_name or list(
        dict.fromkeys([args.model, args.model.rstrip("/").rsplit("/", 1)[-1]])
    )
    if args.ray:
        from ..ray.cli import run_serve

        quiet_transformers()
        return run_serve(args, engine_options(args), api_key=api_key, model_names=names)
    try:
        import uvicorn

        from ..server.app import create_app
        from ..server.guard import ACCESS_LOG
    except ImportError as exc:
        raise UsageError(f"{exc.name} is missing: pip install 'qwen3-rerank[server]'") from exc
    from ..reranker import Reranker

    if args.access_log:
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        access = logging.getLogger(ACCESS_LOG)
        access.addHandler(handler)
        access.setLevel(logging.INFO)
    quiet_transformers()
    with Reranker(args.model, **engine_options(args)) as rr:
        _leave_a_core_for_the_event_loop(rr)
        app = create_app(
            rr,
            model_name=names,
            api_key=api_key,
            max_documents=args.max_documents,
            max_queue=args.max_queue,
            max_body_bytes=args.max_body_mb * 2**20,
            access_log=args.access_log,
        )
        print(
            f"qwen3-rerank: serving {args.model} as {', '.join(names)} on "
            f"http://{args.host}:{args.port}",
            file=sys.stderr,
        )
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            timeout_graceful_shutdown=args.shutdown_grace,
            timeout_keep_alive=args.keep_alive_timeout,
            limit_concurrency=args.max_connections,
        )
    return 0


def _serve_api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key, --api-key-file or the environment (in that order); an empty
    one is refused, since it would start a server nobody can use."""
    import os

    if args.api_key is not None:
        key, where = args.api_key, "--api-key"
    elif args.api_key_file is not None:
        with open(args.api_key_file, encoding="utf-8") as f:
            key, where = f.read().strip(), f"--api-key-file {args.api_key_file}"
    elif API_KEY_ENV in os.environ:
        key, where = os.environ[API_KEY_ENV], API_KEY_ENV
    else:
        return None
    if not key.strip():
        raise UsageError(f"the API key from {where} is empty; give a key, or none at all")
    return str(key)


def _run_batch(args: argparse.Namespace) -> int:
    if (args.model is None) and (args.url is None):
        raise UsageError("give --model (a local engine) or --url (a rerank server)")
    from ..ray.cli import run_batch

    return run_batch(args, engine_options(args))


def _run_ui(args: argparse.Namespace) -> int:
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


def _run_bench(args: argparse.Namespace) -> int:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise UsageError("transformers is missing: pip install 'qwen3-rerank[torch]'") from exc
    from ..bench import bench

    quiet_transformers()
    with build_reranker(args) as rr:
        tokenizer = AutoTokenizer.from_pretrained(args.model)  # makes the inputs, counts tokens
        on_cpu = getattr(getattr(rr.engine, "device", None), "type", None) == "cpu"
        results = bench(
            rr,
            tokenizer,
            args.workload or (CPU_WORKLOADS if on_cpu else GPU_WORKLOADS),
            passes=args.passes,
            latency_queries=args.latency_queries or (3 if on_cpu else 12),
            seed=args.seed,
            max_length=args.max_length,
            report=None if args.quiet else lambda line: print(f"bench: {line}", file=sys.stderr),
        )
        where = args.url or _device_name(rr)
    if args.format == "json":
        runs = {
            r.workload: {k: v for k, v in r.as_dict().items() if k != "workload"} for r in results
        }
        print(json.dumps({"model": args.model, "engine": where, "workloads": runs}))
        return 0
    print(f"{args.model} on {where}")
    print(
        f"{'workload':<12} {'pairs':>6} {'tokens':>8} {'pairs/s':>9} {'tokens/s':>10} "
        f"{'p50 ms':>8} {'max ms':>8} {'torch peak GiB':>15}"
    )
    for r in results:
        peak = "-" if r.torch_peak_gib is None else f"{r.torch_peak_gib:.2f}"
        print(
            f"{r.workload:<12} {r.pairs:>6} {r.tokens:>8} {r.pairs_per_s:>9.1f} "
            f"{r.tokens_per_s:>10.0f} {r.p50_ms:>8.1f} {r.max_ms:>8.1f} {peak:>15}"
        )
    return 0


def _device_name(rr: Any) -> str:
    """The engine and its device, with the GPU's name on CUDA."""
    engine = type(rr.engine).__name__
    device = getattr(rr.engine, "device", None)
    if getattr(device, "type", None) == "cuda":
        import torch

        return f"{engine}, {device} ({torch.cuda.get_device_name(device)})"
    return engine if device is None else f"{engine}, {device}"


def _leave_a_core_for_the_event_loop(rr: Any) -> None:
    """On CPU, torch's spinning worker threads would starve the server's event loop."""
    device = getattr(rr.engine, "device", None)
    if getattr(device, "type", None) == "cpu":
        import os

        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))


def _run_make_model(args: argparse.Namespace) -> int:
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
