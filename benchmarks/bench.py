"""Benchmark: qwen3-rerank against the model-card code, careful transformers and vLLM, on a GPU.

    python benchmarks/bench.py --out benchmarks/results          # builds a random 0.6B model

Each engine runs in a child process of its own, one after the other in one invocation, on the
same model folder and the same workloads (shared/design/performance.md). Whole-GPU memory is
read from nvidia-smi every 50 ms during each workload; torch peak memory from
torch.cuda.max_memory_allocated (in-process engines only). Throughput is the best of 3 timed
passes after a warm-up pass, each pass on fresh inputs of the workload's shape (another seed),
and where an engine can take the whole workload in one call (vLLM, ours) the better of
per-query calls and one call is reported; ``repeat_pairs_per_s`` times the warm-up's inputs
again, which an engine with a cross-call prefix cache (vLLM) partly skips. p50/p99 are
latencies of one fresh query of the workload (100 documents for rag100x256). The JSON goes to
OUT/results.json; benchmarks/report.py turns it into a table and a chart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENGINE_ORDER = [
    "card",
    "transformers",
    "ours",
    "ours_1.5gib",
    "ours_fp8",
    "reference_fp32",
    "vllm",
    "vllm_kv1g",
    "vllm_engine",
    "vllm_engine_kv3g",
]
WORKLOAD_ORDER = ["rag100x256", "mixed16x100", "long16x4000"]
FRESH_VARIANTS = 2 * 3 + 12  # 3 timed passes per mode (2 modes), 12 latency samples


def query_gpu(field: str) -> str:
    """One nvidia-smi ``--query-gpu`` field of the first GPU (no CUDA context of our own)."""
    return (
        subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.splitlines()[0]
        .strip()
    )


class GpuMemory:
    """Polls whole-GPU used memory with nvidia-smi; ``peak()`` since the last ``reset()``."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [
                "nvidia-smi",
                "--query-gpu=memory.used",
                "--format=csv,noheader,nounits",
                "-lms",
                "50",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._peak = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip().isdigit():
                with self._lock:
                    self._peak = max(self._peak, int(line))

    def reset(self) -> None:
        time.sleep(0.15)
        with self._lock:
            self._peak = 0

    def peak_gib(self) -> float:
        time.sleep(0.15)
        with self._lock:
            return self._peak / 1024

    def close(self) -> None:
        self._proc.terminate()


def flops_per_pair(config: dict[str, Any], tokens: int) -> float:
    """Dense FLOPs of one pair with no prefix reuse: weights (no embedding) and causal attention."""
    h, inter, layers = (
        config["hidden_size"],
        config["intermediate_size"],
        config["num_hidden_layers"],
    )
    heads, kv, hd = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    per_layer = h * (heads + 2 * kv) * hd + heads * hd * h + 3 * h * inter
    attention = 2 * layers * heads * hd * tokens * (tokens + 1)  # QK^T and AV, causal half
    return 2.0 * per_layer * layers * tokens + attention


def run_child(engine: str, model: str, workloads: list[str], out: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    sys.path.insert(0, str(HERE))
    from engines import ENGINES
    from qwen3_rerank.prompt import DEFAULT_INSTRUCTION, PromptEncoder
    from qwen3_rerank.tokenizing import batch_encoder
    from qwen3_rerank.workloads import Workload, build

    gpu = GpuMemory()
    tokenizer = AutoTokenizer.from_pretrained(model)
    encoder = PromptEncoder(batch_encoder(tokenizer))
    config = json.loads((Path(model) / "config.json").read_text())
    # Seed 0 is the workload itself (warm-up, accuracy); the others are fresh inputs of the
    # same shape for the timed passes, so that no engine replays work it cached on an earlier
    # pass (vLLM's prefix cache would, given the same documents again).
    variants = [build(tokenizer, seed=s) for s in range(1 + FRESH_VARIANTS)]
    all_workloads = variants[0]
    start = time.perf_counter()
    runner = ENGINES[engine](model)
    result: dict[str, Any] = {
        "load_s": round(time.perf_counter() - start, 2),
        "info": runner.info,
        "workloads": {},
    }
    # an out-of-process engine (vLLM) must not get a CUDA context of ours counted with it
    sync = torch.cuda.synchronize if runner.in_process_torch else lambda: None

    def timed(fn: Any, inputs: Any) -> float:
        sync()
        t = time.perf_counter()
        fn(inputs)
        sync()
        return time.perf_counter() - t

    reference: dict[str, list[list[float]]] = {}
    for name in workloads:
        wl = all_workloads[name]
        if engine == "reference_fp32":  # scores only: the yardstick for bf16 accuracy
            reference[name] = [runner.per_query(q, d) for q, d in wl.items()]
            continue
        lengths = [encoder.encode(q, ds, DEFAULT_INSTRUCTION) for q, ds in wl.items()]
        tokens = [e.pair_length(i) for e in lengths for i in range(len(e.document_ids))]
        flops = sum(flops_per_pair(config, n) for n in tokens)
        entry: dict[str, Any] = {"pairs": wl.pairs, "tokens": sum(tokens)}
        if runner.in_process_torch:
            torch.cuda.reset_peak_memory_stats()
        gpu.reset()
        fresh = iter(v[name] for v in variants[1:])
        try:
            modes = _modes(runner)
            for mode, fn in modes.items():
                reference.setdefault(name, fn(wl))  # warm-up (and compile)
                best = min(timed(fn, next(fresh)) for _ in range(3))
                entry[f"{mode}_pairs_per_s"] = round(wl.pairs / best, 1)
                best = min(timed(fn, wl) for _ in range(3))
                entry[f"repeat_{mode}_pairs_per_s"] = round(wl.pairs / best, 1)
            best_mode = max(modes, key=lambda m: entry[f"{m}_pairs_per_s"])
            entry["mode"] = best_mode
            entry["pairs_per_s"] = entry[f"{best_mode}_pairs_per_s"]
            entry["repeat_pairs_per_s"] = max(entry[f"repeat_{m}_pairs_per_s"] for m in modes)
            entry["tokens_per_s"] = round(entry["pairs_per_s"] * sum(tokens) / wl.pairs, 1)
            entry["flops_per_s"] = entry["pairs_per_s"] * flops / wl.pairs
            latencies = []
            for _ in range(12):
                one = next(fresh)
                single = Workload(one.name, one.queries[:1], one.documents[:1])
                latencies.append(timed(modes["per_query"], single) * 1000)
            latencies.sort()
            entry["p50_ms"] = round(statistics.median(latencies), 2)
            entry["p99_ms"] = round(latencies[-1], 2)  # the worst of 12
        except torch.OutOfMemoryError as exc:
            entry.update(
                pairs_per_s=None, tokens_per_s=None, p50_ms=None, error=f"OOM: {exc}"[:200]
            )
            if runner.in_process_torch:
                torch.cuda.empty_cache()
        entry["torch_peak_gib"] = (
            round(torch.cuda.max_memory_allocated() / 2**30, 3) if runner.in_process_torch else None
        )
        entry["gpu_peak_gib"] = round(gpu.peak_gib(), 3)
        result["workloads"][name] = entry
        print(engine, name, {k: v for k, v in entry.items() if k != "error"}, flush=True)
    result["scores"] = reference
    runner.close()
    gpu.close()
    out.write_text(json.dumps(result))


def _modes(runner: Any) -> dict[str, Any]:
    """The ways to score a workload: a call per query, and one call where the engine has it."""
    modes = {"per_query": lambda wl: [runner.per_query(q, d) for q, d in wl.items()]}
    if runner.at_once is not None:
        modes["at_once"] = lambda wl: runner.at_once(wl.queries, wl.documents)
    return modes


def peak_tflops() -> float:
    """Dense bf16 matmul throughput of this GPU, measured now (8192^3, best of 10)."""
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(10):
        torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * 8192**3 / best / 1e12


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model folder (default: build a random-weight 0.6B)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--engines", default=",".join(ENGINE_ORDER))
    parser.add_argument("--append", action="store_true", help="add engines to OUT/results.json")
    parser.add_argument("--workloads", default=",".join(WORKLOAD_ORDER))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--device-info", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workloads = args.workloads.split(",")
    if args.child:
        run_child(args.child, args.model, workloads, Path(args.child_out))
        return 0
    if args.device_info:
        import torch

        info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
        print(json.dumps({**info, "peak_bf16_tflops": round(peak_tflops(), 1)}))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        from qwen3_rerank.random_model import build_random_model

        model = str(build_random_model("/tmp/qwen3-reranker-0.6b-random", "0.6b", dtype="bfloat16"))
    if args.append and (out / "results.json").exists():
        results = json.loads((out / "results.json").read_text())
    else:
        # in a child: a CUDA context held here would be counted in every engine's GPU memory
        device = subprocess.run(
            [sys.executable, __file__, "--device-info"], capture_output=True, text=True, check=True
        )
        results = {
            **json.loads(device.stdout.strip().splitlines()[-1]),
            "workloads": {w: {} for w in workloads},
            "engines": {},
        }
    for engine in args.engines.split(","):
        child_out = out / f".{engine}.json"
        cmd = [
            sys.executable,
            __file__,
            "--child",
            engine,
            "--model",
            model,
            "--workloads",
            args.workloads,
            "--child-out",
            str(child_out),
        ]
        log = out / f"{engine}.log"  # all the child says (vLLM logs its settings to stdout)
        with log.open("w") as output:
            proc = subprocess.run(
                cmd,
                env={**os.environ, "TOKENIZERS_PARALLELISM": "true"},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        said = log.read_text(errors="replace").strip().splitlines()
        for line in said:
            if line.startswith(f"{engine} "):  # the child's figures per workload
                print(line, flush=True)
        if proc.returncode != 0 or not child_out.exists():
            tail = said[-3:]
            results["engines"][engine] = {"error": f"exit code {proc.returncode}: {tail}"}
            for w in workloads:
                results["workloads"][w][engine] = None
            continue
        child = json.loads(child_out.read_text())
        child_out.unlink()
        results["engines"][engine] = {
            "load_s": child["load_s"],
            "info": child["info"],
            "scores": child["scores"],
        }
        if engine == "reference_fp32":
            (out / "results.json").write_text(json.dumps(results, indent=1))
            continue
        for w, entry in child["workloads"].items():
            if entry.get("flops_per_s"):
                entry["flop_fraction"] = round(
                    entry.pop("flops_per_s") / 1e12 / results["peak_bf16_tflops"], 3
                )
            results["workloads"][w][engine] = entry
        (out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
