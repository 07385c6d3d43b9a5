"""Does anything outside the engine slow one query down? (CUDA only)

    python benchmarks/pause_probe.py --model MODEL --out OUT [--rounds 3]

Times fresh rag100x256 queries (16 per round) through ``Reranker.rerank`` in alternating
rounds: alone, and with ``nvidia-smi -lms 50`` polling whole-GPU memory as bench.py does
while it times latency. Python's garbage collector is watched throughout: each query records
the collections that ran during it and how long they took (a full collection of this
process's tracked objects, 0.6-1M, is also timed once, for scale). Writes OUT/pause_probe.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def summary(walls: list[float], pauses: list[list[tuple[int, float]]]) -> dict[str, Any]:
    ordered = sorted(walls)
    return {
        "queries": len(walls),
        "p50_ms": round(statistics.median(walls), 2),
        "p90_ms": ordered[int(0.9 * len(ordered))],
        "max_ms": ordered[-1],
        "gc_runs": sum(len(p) for p in pauses),
        "gc_ms": round(sum(ms for p in pauses for _, ms in p), 2),
        "wall_ms": walls,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each kind")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from qwen3_rerank import Reranker
    from qwen3_rerank.workloads import build

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    one = [
        (wl.queries[0], wl.documents[0])
        for wl in (build(tokenizer, seed=s)["rag100x256"] for s in range(16))
    ]
    reranker = Reranker(args.model, device="cuda")
    for query, docs in one[:4]:  # compile and record the batch shapes
        reranker.rerank(query, docs)

    started: list[float] = []
    pauses: list[tuple[int, float]] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        else:
            pauses.append((info["generation"], (time.perf_counter() - started.pop()) * 1000))

    tracked = len(gc.get_objects())
    t = time.perf_counter()
    gc.collect()
    full_ms = (time.perf_counter() - t) * 1000
    gc.callbacks.append(watch)

    def round_of(poll: bool) -> tuple[list[float], list[list[tuple[int, float]]]]:
        poller = (
            subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader", "-lms", "50"],
                stdout=subprocess.DEVNULL,
            )
            if poll
            else None
        )
        time.sleep(0.5)
        walls, seen = [], []
        try:
            for query, docs in one:
                pauses.clear()
                torch.cuda.synchronize()
                t = time.perf_counter()
                reranker.rerank(query, docs)
                torch.cuda.synchronize()
                walls.append(round((time.perf_counter() - t) * 1000, 2))
                seen.append(list(pauses))
        finally:
            if poller is not None:
                poller.terminate()
                poller.wait()
        return walls, seen

    runs: dict[str, tuple[list[float], list[list[tuple[int, float]]]]] = {
        "alone": ([], []),
        "nvidia_smi_polling": ([], []),
    }
    for _ in range(args.rounds):
        for kind, (walls, seen) in runs.items():
            w, s = round_of(kind == "nvidia_smi_polling")
            walls += w
            seen += s
    gc.callbacks.remove(watch)
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "gc_tracked_objects": tracked,
        "gc_full_collection_ms": round(full_ms, 1),
        **{kind: summary(*run) for kind, run in runs.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pause_probe.json").write_text(json.dumps(result, indent=1) + "\n")
    for kind in runs:
        print(kind, {k: v for k, v in result[kind].items() if k != "wall_ms"})
    print({k: v for k, v in result.items() if k not in runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
