"""``qwen3-rerank batch`` and ``qwen3-rerank serve --ray``: the Ray commands' arguments and runs.

``qwen3_rerank.cli`` registers them; Ray is imported only when one of them runs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, Qwen3RerankError

__all__ = ["add_batch_command", "add_serve_ray_arguments", "run_batch", "run_serve"]

FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def add_batch_command(commands: Any) -> argparse.ArgumentParser:
    """The ``batch`` subcommand's own arguments (``qwen3_rerank.cli.batch`` adds the engine
    and remote ones)."""
    batch: argparse.ArgumentParser = commands.add_parser(
        "batch",
        help="score a Parquet/JSONL/CSV dataset of query-document rows on Ray Data",
        description="Score rows of {query, document[, instruction]} or {query, documents: "
        "list} with one model per Ray actor (one per GPU, or per CPU slot) and write them with "
        "a 'score' and an 'error' column, in input order, other columns kept. The format comes "
        "from the extension (.parquet, .jsonl/.json, .csv; a folder is read as Parquet); the "
        "output is a folder of files in its extension's format, as Ray Data writes.",
    )
    batch.add_argument("--input", "-i", required=True, help="file, folder or glob Ray Data reads")
    batch.add_argument("--output", "-o", required=True, help="output folder (e.g. scored.parquet)")
    batch.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    batch.add_argument("--concurrency", type=int, default=1, help="actors (default 1)")
    batch.add_argument(
        "--num-gpus", type=float, help="GPUs per actor (default: 1 if the cluster has GPUs)"
    )
    batch.add_argument("--batch-size", type=int, default=1024, help="rows per actor call")
    batch.add_argument("--strict", action="store_true", help="fail on the first bad row")
    batch.add_argument(
        "--quiet", action="store_true", help="no progress bars, no Ray info or warning lines"
    )
    return batch


def add_serve_ray_arguments(serve: argparse.ArgumentParser) -> None:
    """``serve --ray`` and its options."""
    group = serve.add_argument_group("Ray Serve (--ray)")
    group.add_argument("--ray", action="store_true", help="serve as a Ray Serve deployment")
    group.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    group.add_argument("--replicas", type=int, default=1, help="replicas (autoscaling: the fewest)")
    group.add_argument("--max-replicas", type=int, help="autoscale up to this many replicas")
    group.add_argument(
        "--num-gpus", type=float, help="GPUs per replica (default: 1 if the cluster has GPUs)"
    )


def run_batch(args: argparse.Namespace, engine_options: dict[str, Any]) -> int:
    """Reads ``--input``, scores it on Ray Data, writes ``--output``."""
    read_format, write_format = _format(args.input, reading=True), _format(args.output)
    if args.concurrency < 1 or args.batch_size < 1:
        raise ConfigurationError("--concurrency and --batch-size must be >= 1")
    ray, ray_data = _import_ray()
    from .batch import rerank_dataset

    ray.init(
        address=args.ray_address,
        include_dashboard=False,
        log_to_driver=not args.quiet,
        logging_level=logging.ERROR if args.quiet else logging.INFO,  # INFO: Ray's default
    )
    try:
        if args.quiet:
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        ray_data.DataContext.get_current().enable_progress_bars = not args.quiet
        ds = getattr(ray_data, f"read_{read_format}")(args.input)
        options = _remote_options(args) if args.url else engine_options
        scored = rerank_dataset(
            ds,
            args.model,
            concurrency=args.concurrency,
            num_gpus=_gpus_per_actor(ray, args.num_gpus),
            batch_size=args.batch_size,
            strict=args.strict,
            **options,
        )
        try:
            getattr(scored, f"write_{write_format}")(args.output)
        except Exception as exc:  # Ray wraps what the actors raised in its own errors
            ours = _our_error(exc)
            if ours is None:
                raise
            # Ray appends its retry advice to the message; ours is its first line.
            try:
                clean = type(ours)(str(ours).split("\n", 1)[0])
            except TypeError:  # an error type that needs more than a message
                clean = ours
            raise clean from None
    finally:
        ray.shutdown()
    print(f"qwen3-rerank: wrote {args.output}", file=sys.stderr)
    return 0


def run_serve(
    args: argparse.Namespace,
    engine_options: dict[str, Any],
    *,
    api_key: str | None,
    model_names: list[str],
) -> int:
    """Deploys the server on Ray Serve at ``--host:--port`` and keeps it up until interrupted;
    ``api_key`` and ``model_names`` as ``qwen3-rerank serve`` resolved them."""
    if args.replicas < 1 or (args.max_replicas is not None and args.max_replicas < args.replicas):
        raise ConfigurationError("need 1 <= --replicas <= --max-replicas")
    ray, _ = _import_ray()
    from ray import serve

    from .serve import rerank_deployment

    ray.init(address=args.ray_address, include_dashboard=False)
    # SIGTERM, and SIGINT even where a shell started us in the background with it ignored, take
    # the way out of Ctrl-C: undeploy, then leave.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        app = rerank_deployment(
            args.model,
            model_name=model_names,
            num_replicas=args.replicas,
            max_replicas=args.max_replicas,
            num_gpus=_gpus_per_actor(ray, args.num_gpus),
            api_key=api_key,
            max_documents=args.max_documents,
            max_queue=args.max_queue,
            allowed_origins=args.allowed_origins,
            **engine_options,
        )
        serve.run(app, route_prefix="/")
        print(
            f"qwen3-rerank: serving {args.model} on http://{args.host}:{args.port} "
            f"(Ray Serve, {args.replicas} replica(s))",
            file=sys.stderr,
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def _our_error(error: BaseException | None) -> Qwen3RerankError | None:
    """The package's error that Ray's wrappers carry (the innermost), so the CLI reports it in
    one line with its exit code."""
    found, seen = None, []
    while error is not None and error not in seen:
        seen.append(error)
        if isinstance(error, Qwen3RerankError):
            found = error
        error = getattr(error, "cause", None) or error.__cause__
    return found


def _format(path: str, reading: bool = False) -> str:
    suffix = Path(path.rstrip("/")).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    if reading and Path(path).is_dir():
        return "parquet"
    raise ConfigurationError(
        f"cannot tell the format of {path!r}: name it with one of {', '.join(FORMATS)}"
    )


def _remote_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "url": args.url,
        "api": args.api,
        "api_key": args.api_key,
        "max_documents_per_request": args.max_documents,
    }


def _gpus_per_actor(ray: Any, asked: float | None) -> float:
    if asked is not None:
        return asked
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _import_ray() -> tuple[Any, Any]:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigurationError("ray is missing: pip install 'qwen3-rerank[ray]'") from exc
    return ray, ray.data
