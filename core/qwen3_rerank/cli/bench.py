"""``qwen3-rerank bench``: its arguments, and how it times a local engine or a server on the
benchmark workloads and prints the results (a table or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..workloads import CPU_WORKLOADS, GPU_WORKLOADS, WORKLOADS
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
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
