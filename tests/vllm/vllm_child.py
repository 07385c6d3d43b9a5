"""Run by tests/vllm/test_vllm_cpu.py with vLLM's Python: the vLLM engine's results for the
batches read as JSON from standard input, written as JSON to the file named last (vLLM logs to
standard output). A script, as vLLM starts its engine process by spawning, which re-imports the
main module; the test reads :func:`results` from here too, for the engines it compares."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from qwen3_rerank import Reranker


def results(rr: Reranker, batch: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """``rerank_batch`` of one batch of :data:`~tests.vllm.test_vllm_cpu.BATCHES`, as JSON."""
    ranked = rr.rerank_batch(batch["queries"], batch["documents"], instruction=batch["instruction"])
    return [
        [
            {"index": r.index, "score": r.score, "truncated": r.truncated, "document": r.document}
            for r in rs
        ]
        for rs in ranked
    ]


def main() -> None:
    model, max_length, result = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    batches = json.load(sys.stdin)
    out: dict[str, Any] = {}
    options = {"dtype": "float32", "enforce_eager": True, "kv_cache_memory_bytes": 2**28}
    with Reranker(model, engine="vllm", max_length=max_length, **options) as rr:
        out["engine"] = type(rr.engine).__name__
        out["batches"] = [results(rr, batch) for batch in batches]
        with Reranker(llm=rr.engine.llm, max_length=max_length) as users:  # a vllm.LLM you built
            out["users_llm"] = results(users, batches[0])
    result.write_text(json.dumps(out))
    # vLLM's CPU build sometimes aborts in its own teardown at interpreter exit ("terminate
    # called without an active exception"), after both rerankers above have closed: the
    # results are written, so end here; the test ends the engine processes vLLM leaves.
    os._exit(0)


if __name__ == "__main__":
    main()
