"""Same-run A/B of two or more checkouts of the package's core on the benchmark workloads.

Used to show that a refactor of the torch engine kept its speed and its scores, or which variant
of a kernel is faster: each core runs in child processes of its own (``PYTHONPATH=<core>``),
alternating A, B, A, B (the order reversed every other round) so that drift of the machine
during the run falls on all; every timed pass gets fresh inputs from the one workload generator
(``core/qwen3_rerank/workloads.py`` of THIS checkout, loaded by path so every core sees the same
inputs). Only the public API (``Reranker(...).rerank_batch``) is called; each core is compared
with the first.

    python benchmarks/ab_cores.py --model M --core before=/path/old/core --core after=core \
        --out OUT/ab_cores.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKLOADS_FILE = HERE.parent / "core" / "qwen3_rerank" / "workloads.py"


def _workloads() -> Any:
    spec = importlib.util.spec_from_file_location("bench_workloads", WORKLOADS_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def child(model: str, names: list[str], passes: int, round_: int, device: str) -> dict[str, Any]:
    """One process of one core: warm up, then ``passes`` timed calls per workload."""
    from transformers import AutoTokenizer

    from qwen3_rerank import Reranker

    workloads = _workloads()
    tokenizer = AutoTokenizer.from_pretrained(model)
    out: dict[str, Any] = {"pairs_per_s": {}, "scores_seed0": {}}
    with Reranker(model, engine="torch", device=device) as rr:
        for name in names:
            fixed = workloads.build(tokenizer, seed=0)[name]
            for _ in range(2):  # a batch shape's CUDA graph is recorded the second time it is seen
                results = rr.rerank_batch(fixed.queries, fixed.documents)
            out["scores_seed0"][name] = [
                [r.score for r in sorted(per_query, key=lambda r: r.index)] for per_query in results
            ]
            rates = []
            for p in range(passes):
                fresh = workloads.build(tokenizer, seed=1000 * (round_ + 1) + p)[name]
                start = time.perf_counter()
                rr.rerank_batch(fresh.queries, fresh.documents)
                rates.append(fresh.pairs / (time.perf_counter() - start))
            out["pairs_per_s"][name] = rates
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--core",
        action="append",
        required=True,
        help="LABEL=PATH, twice or more: each vs the first",
    )
    parser.add_argument("--workloads", default="rag100x256,mixed16x100,long16x4000")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.workloads.split(",")
    if args.child:
        Path(args.child).write_text(
            json.dumps(child(args.model, names, args.passes, args.round, args.device))
        )
        return 0

    cores = dict(spec.split("=", 1) for spec in args.core)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in cores}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for round_ in range(args.rounds):
        order = list(cores) if round_ % 2 == 0 else list(reversed(cores))
        for label in order:
            result = out.with_suffix(f".{label}.{round_}.json")
            env = {
                **os.environ,
                "PYTHONPATH": f"{Path(cores[label]).resolve()}:" + os.environ.get("PYTHONPATH", ""),
            }
            command = [
                sys.executable,
                __file__,
                "--model",
                args.model,
                "--core",
                args.core[0],
                "--device",
                args.device,
                "--workloads",
                args.workloads,
                "--passes",
                str(args.passes),
                "--out",
                args.out,
                "--child",
                str(result),
                "--round",
                str(round_),
            ]
            subprocess.run(command, env=env, check=True)
            runs[label].append(json.loads(result.read_text()))
            result.unlink()

    summary: dict[str, Any] = {"workloads": {}, "runs": runs}
    first, *others = list(cores)
    for name in names:
        best = {label: max(max(r["pairs_per_s"][name]) for r in runs[label]) for label in cores}
        summary["workloads"][name] = {"best_pairs_per_s": best}
        line = f"{name:14s} " + "  ".join(f"{k} {v:8.1f}" for k, v in best.items())
        a = runs[first][0]["scores_seed0"][name]
        for other in others:
            b = runs[other][0]["scores_seed0"][name]
            diff = max(
                abs(x - y) for qa, qb in zip(a, b, strict=True) for x, y in zip(qa, qb, strict=True)
            )
            summary["workloads"][name] |= {
                f"{other}_over_{first}": best[other] / best[first],
                f"max_abs_score_diff_{other}": diff,
            }
            line += f"  {other}/{first} {best[other] / best[first]:.3f} max|Δscore| {diff:.2e}"
        print(line)
    out.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
