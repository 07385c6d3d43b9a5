"""``qwen3-rerank serve``: its arguments, the API key and served names it resolves, and how it
starts the HTTP server (uvicorn here, Ray Serve with ``--ray``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..engines.dialects import SERVER_API_KEY_ENV
from ..ray.cli import add_serve_ray_arguments
from .common import (
    UsageError,
    add_engine_arguments,
    engine_options,
    positive_int,
    quiet_transformers,
)

__all__ = ["add_command", "run"]


def add_command(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a rerank API that vLLM, Cohere, Jina, TEI and Infinity clients can use",
        description="Serve POST /v1/rerank (also /rerank, /v2/rerank), /v1/rerank/batch, "
        "/v1/score (also /score), GET /health, /v1/models, /version, /metrics and /docs "
        "(OpenAPI). Requests arriving together are scored together. See docs/server.md.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=positive_int, default=8000)
    serve.add_argument(
        "--api-key",
        help=f"require 'Authorization: Bearer KEY' (better: the {SERVER_API_KEY_ENV} environment "
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
        "--allowed-origins",
        nargs="+",
        default=[],
        metavar="ORIGIN",
        help="web pages of these origins may call the API from a browser (CORS), e.g. "
        "https://app.example.com, or * for any (default: none)",
    )
    serve.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no per-request log line on stderr",
    )
    add_engine_arguments(serve)
    add_serve_ray_arguments(serve)
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
            allowed_origins=args.allowed_origins,
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
    elif SERVER_API_KEY_ENV in os.environ:
        key, where = os.environ[SERVER_API_KEY_ENV], SERVER_API_KEY_ENV
    else:
        return None
    if not key.strip():
        raise UsageError(f"the API key from {where} is empty; give a key, or none at all")
    return str(key)


def _leave_a_core_for_the_event_loop(rr: Any) -> None:
    """On CPU, torch's spinning worker threads would starve the server's event loop."""
    device = getattr(rr.engine, "device", None)
    if getattr(device, "type", None) == "cpu":
        import os

        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
