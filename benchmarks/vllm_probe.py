"""Why vLLM runs slower in our benchmark than in performance.md: its settings and its GPU time.

    python benchmarks/vllm_probe.py --model MODEL --out OUT [--option key=value ...]

Loads ``vllm.LLM`` exactly as ``bench.py``'s ``vllm`` engine does (plus any ``--option``),
with the engine core in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so the torch
profiler sees its kernels. It records the settings vLLM resolved (batch tokens, compilation,
prefix caching; the attention backend is in its log), the wall time of one fresh rag100x256
query and of one long16x4000 query, the CPU time of the tokenizer calls ``LLM.score`` makes,
and each query's GPU kernel time by kind. Writes OUT/vllm_probe.json; vLLM logs to stdout.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def settings(llm: Any) -> dict[str, Any]:
    """The resolved settings that decide vLLM's speed on this workload (None where a vLLM
    version names one otherwise)."""
    config = llm.llm_engine.vllm_config
    wanted = {
        "model_config": ("dtype", "max_model_len", "enforce_eager"),
        "scheduler_config": ("max_num_batched_tokens", "max_num_seqs", "enable_chunked_prefill"),
        "cache_config": ("enable_prefix_caching", "gpu_memory_utilization", "block_size"),
        "compilation_config": ("mode", "level", "cudagraph_mode", "cudagraph_capture_sizes"),
    }
    out: dict[str, Any] = {}
    for part, names in wanted.items():
        section = getattr(config, part, None)
        for name in names:
            value = getattr(section, name, None)
            out[name] = value if isinstance(value, (int, float, bool, type(None))) else str(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--option", action="append", default=[], help="LLM option key=value")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import torch
    from transformers import AutoTokenizer

    from engines import load_vllm
    from latency_probe import kernel_ms
    from qwen3_rerank.workloads import build

    options = {k: _value(v) for k, v in (o.split("=", 1) for o in args.option)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    work = [build(tokenizer, seed=s) for s in range(7)]  # warm-up, 5 timed, 1 profiled
    start = time.perf_counter()
    runner = load_vllm(args.model, **options)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "options": options,
        "load_s": round(time.perf_counter() - start, 1),
    }
    result["settings"] = settings(runner.engine)
    for name in ("rag100x256", "long16x4000"):
        query, docs = work[0][name].items()[0]
        runner.per_query(query, docs)  # warm-up
        walls = []
        for w in work[1:6]:
            q, d = w[name].items()[0]
            t = time.perf_counter()
            runner.per_query(q, d)
            walls.append((time.perf_counter() - t) * 1000)
        q, d = work[0][name].items()[1 % len(work[0][name].queries)]
        t = time.perf_counter()
        for doc in d:  # one tokenizer call per pair, as vLLM's scoring pre-processing makes
            tokenizer(text=q, text_pair=doc)
        tokenize_ms = (time.perf_counter() - t) * 1000
        q, d = work[6][name].items()[0]  # unseen: vLLM's prefix cache would skip a repeat
        work = kernel_ms(lambda q=q, d=d: runner.per_query(q, d))
        result[name] = {
            "wall_ms": [round(x, 1) for x in walls],
            "wall_ms_p50": round(statistics.median(walls), 1),
            "tokenize_pairs_ms": round(tokenize_ms, 1),
            "gpu_ms_by_kind": work["by_kind"],
            "gpu_ms_total": work["total_ms"],
            "top_kernels": work["top"],
        }
        print(json.dumps({name: result[name]}, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vllm_probe.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["settings"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
