"""CPU: the packed fast path against transformers' padded path, per document length.

Usage: python3 benchmarks/cpu_paths.py MODEL_FOLDER [--repeat 5] [--docs 16] [--lengths 256 3000]
       [--paths grouped loop padded]

A path is an attention backend of the fast path (``grouped``, ``loop``) or ``padded``
(transformers' model, ``fast=False``). Prints one JSON line per (length, path): the median and
all wall times of scoring one query with ``--docs`` documents of that many one-token words
(the CPU is often shared: medians).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

from transformers import AutoTokenizer

from qwen3_rerank import Reranker
from qwen3_rerank.workloads import single_token_words


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 3000])
    parser.add_argument("--paths", nargs="+", default=["grouped", "padded"])
    args = parser.parse_args()
    words = single_token_words(AutoTokenizer.from_pretrained(args.model))
    rng = random.Random(0)

    def text(n: int) -> str:  # n words of one token each
        return " ".join(rng.choice(words) for _ in range(n))

    query = text(20)
    for length in args.lengths:
        docs = [text(length) for _ in range(args.docs)]
        for path in args.paths:
            options: dict[str, Any] = {"attention": path}
            if path in ("grouped", "padded"):  # the default fast path on CPU, or fast=False
                options = {"fast": path == "grouped"}
            with Reranker(args.model, device="cpu", **options) as rr:
                rr.score(query, ["a short warm-up document"])
                times = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    rr.score(query, docs)
                    times.append(time.perf_counter() - start)
            row = {"tokens": length, "docs": args.docs, "path": path}
            row |= {"median_s": round(statistics.median(times), 3), "times_s": times}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
