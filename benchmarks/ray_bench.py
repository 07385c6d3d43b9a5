"""Ray Data's overhead on one GPU: a Ray Data job with one GPU actor against the in-process engine.

    python benchmarks/ray_bench.py --model MODEL --out benchmarks/results/<device>/ray.json
    python benchmarks/ray_bench.py --model TINY --device cpu --seeds 2 --out /tmp/ray.json  # check

Inputs: the rag100x256 workload (4 queries x 100 documents of 256 tokens) for ``--seeds``
seeds, laid out as one row per pair (``query``, ``document``, ``id``), the same pairs for both.

- In-process: one ``Reranker`` on the GPU; a warm-up call, then the best of ``--passes`` calls
  of ``rerank_batch`` over every query at once.
- Ray Data: ``rerank_dataset(concurrency=1, num_gpus=1)`` (``num_gpus=0`` on a CPU) over the
  same rows, in a local Ray cluster. Each actor warms its engine up in its constructor (as the
  in-process run does), and each batch records when it started and ended, so the scoring window
  (first batch start to last batch end) is timed apart from the job's wall time (which adds
  Ray's start-up and the model load). The best of ``--passes`` jobs is kept.

Writes JSON: pairs/s for both, overhead % of the scoring window (and of the whole job) against
the in-process rate, and a check that both scored the same (max abs difference).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qwen3_rerank import Reranker
from qwen3_rerank.ray import RerankBatches, rerank_dataset
from qwen3_rerank.workloads import build


class TimedBatches(RerankBatches):
    """Warms the engine up once, then stamps each batch with its start and end times."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reranker.score("warm-up query", ["warm-up document " * 64] * 64)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.time()
        out = super().__call__(batch)
        rows = len(out["score"])
        out["batch_start"] = np.full(rows, start)
        out["batch_end"] = np.full(rows, time.time())
        return out


def rows_of(model: str, seeds: int) -> list[dict[str, Any]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = []
    for seed in range(seeds):
        rag = build(tokenizer, seed=seed)["rag100x256"]
        for q, (query, documents) in enumerate(rag.items()):
            for d, document in enumerate(documents):
                rows.append({"id": f"{seed}-{q}-{d}", "query": query, "document": document})
    return rows


def in_process(
    model: str, rows: list[dict[str, Any]], passes: int, options: dict[str, Any]
) -> tuple[float, list[float]]:
    queries: dict[str, list[str]] = {}
    for row in rows:
        queries.setdefault(row["query"], []).append(row["document"])
    with Reranker(model, **options) as rr:
        rr.score("warm-up query", ["warm-up document " * 64] * 64)
        best = float("inf")
        for _ in range(passes):
            start = time.perf_counter()
            results = rr.rerank_batch(list(queries), list(queries.values()))
            best = min(best, time.perf_counter() - start)
        scores = {}
        for (query, documents), ranked in zip(queries.items(), results, strict=True):
            by_index = {r.index: r.score for r in ranked}
            scores.update({(query, documents[i]): by_index[i] for i in range(len(documents))})
        in_row_order = [scores[(row["query"], row["document"])] for row in rows]
    return len(rows) / best, in_row_order


def on_ray(
    model: str, rows: list[dict[str, Any]], passes: int, batch_size: int, options: dict[str, Any]
) -> tuple[float, float, list[dict[str, Any]]]:
    import ray
    import ray.data

    ray.init(include_dashboard=False)
    best_window = best_wall = float("inf")
    try:
        for _ in range(passes):
            start = time.perf_counter()
            out = rerank_dataset(
                ray.data.from_items(rows),
                model,
                concurrency=1,
                num_gpus=1 if options["device"].startswith("cuda") else 0,
                batch_size=batch_size,
                batches=TimedBatches,
                **options,
            ).take_all()
            best_wall = min(best_wall, time.perf_counter() - start)
            window = max(r["batch_end"] for r in out) - min(r["batch_start"] for r in out)
            best_window = min(best_window, window)
            assert [r["id"] for r in out] == [r["id"] for r in rows]
            assert all(r["error"] is None for r in out)
    finally:
        ray.shutdown()
    return len(rows) / best_window, len(rows) / best_wall, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--seeds", type=int, default=25, help="rag100x256 copies (400 pairs each)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per Ray batch")
    parser.add_argument("--engine", default="auto", help="auto | torch | vllm")
    parser.add_argument("--device", default="cuda", help="cuda (one GPU actor) or cpu")
    args = parser.parse_args()

    options = {"engine": args.engine, "device": args.device}
    rows = rows_of(args.model, args.seeds)
    local_rate, local_scores = in_process(args.model, rows, args.passes, options)
    window_rate, job_rate, out = on_ray(args.model, rows, args.passes, args.batch_size, options)
    result = {
        "model": args.model,
        "engine": args.engine,
        "device": args.device,
        "workload": "rag100x256",
        "pairs": len(rows),
        "batch_size": args.batch_size,
        "in_process_pairs_per_s": round(local_rate, 1),
        "ray_scoring_pairs_per_s": round(window_rate, 1),
        "ray_job_pairs_per_s": round(job_rate, 1),
        "ray_scoring_overhead_pct": round(100 * (local_rate / window_rate - 1), 1),
        "ray_job_overhead_pct": round(100 * (local_rate / job_rate - 1), 1),
        "max_abs_score_diff": max(
            abs(r["score"] - score) for r, score in zip(out, local_scores, strict=True)
        ),
        "rows_whose_text_changed": sum(
            (r["query"], r["document"]) != (row["query"], row["document"])
            for r, row in zip(out, rows, strict=True)
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
