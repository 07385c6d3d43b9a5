"""Where one 100-document query's time goes on the GPU, and how low it could go (CUDA only).

    python benchmarks/latency_probe.py --model MODEL --out OUT [--workload long16x4000]

On one query of rag100x256 (or of another workload; fresh inputs each time) it measures:
the wall time of ``Reranker.rerank``; the CPU time of tokenising it; the GPU time by kind
(torch profiler: matmuls, attention, fused elementwise kernels, gathers and copies, the rest)
and how much of the wall time the GPU had work at all; and, on the same packed shapes, the 28
layers' matmuls alone in bf16 (cuBLAS) and in FP8 with row-wise scales
(``torch._scaled_mm``), and the attention kernel alone. The matmuls alone are a floor no bf16
engine of this model goes under. A timeline of three queries (two fresh, then the first
again) shows when each piece was tokenized, each batch launched and run on the GPU, and each
batch's scores waited for. Without ``--quick``, where the engine runs the MLP's gate in one
kernel (``gated_mlp``), the same queries are also timed, in alternating rounds, with cuBLAS
and inductor's kernel instead, and their GPU work profiled. Writes OUT/latency_probe.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def kind_of(kernel: str) -> str:
    name = kernel.lower()
    # inductor names its fused kernels after the ops they feed, "..._prefix_attention_..." too
    if "flash" in name or "fmha" in name or name.startswith("_prefix_attention"):
        return "attention"
    if any(k in name for k in ("gemm", "nvjet", "cutlass", "xmma", "sm90_", "matmul")):
        return "matmul"
    if name.startswith("triton"):
        return "fused elementwise (triton)"
    if "index" in name or "gather" in name or "scatter" in name:
        return "gather / index"
    if "copy" in name or "memcpy" in name or "memset" in name:
        return "copy"
    return "other"


def best_ms(fn: Any, reps: int = 5) -> float:
    import torch

    fn()
    best = float("inf")
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end))
    return best


def kernel_ms(fn: Any, top: int = 10, per: int = 1) -> dict[str, Any]:
    """GPU work of ``fn()``, divided by ``per`` (e.g. the queries it runs): the wall time, the
    time the GPU had any kernel or copy running (the union of their spans), the time by kernel
    kind, the ``top`` costliest kernels and the number of memsets (in a CUDA graph, each also
    costs a gap of a few microseconds)."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - t) * 1000
    spans = [
        (e.time_range.start, e.time_range.end, e.name)
        for e in prof.events()
        if e.device_type == DeviceType.CUDA
    ]
    by_kind: dict[str, float] = defaultdict(float)
    by_name: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for start, end, name in spans:
        by_kind[kind_of(name)] += (end - start) / 1000 / per
        by_name[name][0] += (end - start) / 1000 / per
        by_name[name][1] += 1 / per
    busy, reach = 0.0, float("-inf")
    for start, end, _ in sorted(spans):
        busy += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    costliest = sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]
    return {
        "wall_ms": round(wall_ms / per, 2),
        "busy_ms": round(busy / 1000 / per, 2),
        "by_kind": {k: round(v, 2) for k, v in sorted(by_kind.items())},
        "total_ms": round(sum(by_kind.values()), 2),
        "memsets": round(sum(1 for *_, name in spans if "memset" in name.lower()) / per, 1),
        "top": [
            {"ms": round(ms, 3), "calls": round(n), "name": k[:120]} for k, (ms, n) in costliest
        ],
    }


def timeline(reranker: Any, query: str, docs: list[str]) -> list[dict[str, Any]]:
    """One query's steps in time order, ms from its start: tokenizing each piece (helper
    thread), launching each batch (CPU) with when the GPU started and finished it, and
    waiting for each batch's scores. Shows what the GPU waits on when it is idle."""
    import torch

    engine = reranker.engine
    events: list[dict[str, Any]] = []
    gpu0 = torch.cuda.Event(enable_timing=True)

    def ms() -> float:
        return round((time.perf_counter() - t0) * 1000, 2)

    def wrap(owner: Any, name: str, gpu: bool = False) -> Any:
        original = getattr(owner, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            entry: dict[str, Any] = {"step": name, "cpu_start": ms()}
            if gpu:
                start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                start.record()
            out = original(*args, **kwargs)
            if gpu:
                end.record()
                entry["gpu"] = (start, end)
            entry["cpu_end"] = ms()
            events.append(entry)
            return out

        setattr(owner, name, run)
        return original

    originals = [
        (engine.encoder, "encode", wrap(engine.encoder, "encode")),
        (engine._packed, "score", wrap(engine._packed, "score", gpu=True)),
        (engine, "_collect", wrap(engine, "_collect")),
    ]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    gpu0.record()
    reranker.rerank(query, docs)
    torch.cuda.synchronize()
    total = ms()
    for owner, name, original in originals:
        setattr(owner, name, original)
    for entry in events:
        if "gpu" in entry:
            start, end = entry.pop("gpu")
            entry["gpu_start"] = round(gpu0.elapsed_time(start), 2)
            entry["gpu_end"] = round(gpu0.elapsed_time(end), 2)
    events.sort(key=lambda e: e["cpu_start"])
    events.append({"step": "total", "cpu_end": total})
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--gpu-room-mib", type=int, help="the engine's default activation room (512 MiB)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only the p50, a timeline, the kernels and the memory peak",
    )
    parser.add_argument(
        "--workload", default="rag100x256", help="whose first query is timed (rag100x256)"
    )
    parser.add_argument("--quantization", help="the engine's quantization option (fp8)")
    args = parser.parse_args()

    import torch
    import torch._inductor.config
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoTokenizer

    from qwen3_rerank import Reranker
    from qwen3_rerank.engines.packed import _silu_gate, attention_flash, attention_prefix, pack
    from qwen3_rerank.prompt import DEFAULT_INSTRUCTION, format_document_part, format_query_part
    from qwen3_rerank.workloads import build

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    queries = [build(tokenizer, seed=s)[args.workload] for s in range(16)]
    one = [(wl.queries[0], wl.documents[0]) for wl in queries]
    from qwen3_rerank.engines import torch as torch_engine

    if args.gpu_room_mib:  # what a larger default budget would do
        torch_engine._DEFAULT_GPU_ROOM = args.gpu_room_mib * 2**20
    reranker = Reranker(args.model, device="cuda", quantization=args.quantization)
    engine: Any = reranker.engine
    packed = engine._packed
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "inductor_cpp_wrapper": bool(torch._inductor.config.cpp_wrapper),
        "max_batch_tokens": engine.max_batch_tokens,
        "attention": engine.attention,
        "workload": args.workload,
        "quantization": args.quantization,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    for _ in range(3):
        reranker.rerank(*one[0])  # warm-up and compile

    def p50_ms(requests: list[Any], skip: int = 0) -> float:
        """Median wall time of ``rerank`` over ``requests``, the first ``skip`` left out."""
        walls = []
        for q, docs in requests:
            torch.cuda.synchronize()
            t = time.perf_counter()
            reranker.rerank(q, docs)
            torch.cuda.synchronize()
            walls.append((time.perf_counter() - t) * 1000)
        return round(statistics.median(walls[skip:]), 2)

    result["wall_ms_p50"] = p50_ms(one[1:11])
    # the same queries again: every batch shape's CUDA graph is recorded by now
    result["wall_ms_p50_second_pass"] = p50_ms(one[1:11])

    result["torch_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    if not args.quick:
        # The same queries with a first batch of other sizes (in batches' worth of tokens, also
        # the size of the pieces tokenized between launches): a small one starts the GPU sooner.
        default_first = torch_engine._FIRST_BATCH
        by_first = {}
        for first in (0.125, 0.25, 0.5, 1.0):
            torch_engine._FIRST_BATCH = first
            by_first[str(first)] = p50_ms(one[1:11])
        torch_engine._FIRST_BATCH = default_first
        result["wall_ms_p50_by_first_batch"] = by_first
        # ... and tokenized by the helper thread while batches launch, as without CUDA graphs
        inline, engine._tokenize_inline = engine._tokenize_inline, False
        result["wall_ms_p50_tokenized_by_helper_thread"] = p50_ms(one[1:11])
        engine._tokenize_inline = inline

        # A small request (one 256-token document): its batch replays a CUDA graph, or launches
        # the compiled graph kernel by kernel.
        graphed = packed._graphed
        small = {}
        for name in ("cuda_graph", "launched"):
            packed._graphed = graphed if name == "cuda_graph" else None
            # the first three: warm-up and recording
            small[name] = p50_ms([(q, docs[:1]) for q, docs in one[:13]], skip=3)
        packed._graphed = graphed
        result["one_document_ms_p50"] = small

    encode = []
    for q, docs in one[1:11]:
        t = time.perf_counter()
        encoded = engine.encoder.encode(q, docs, DEFAULT_INSTRUCTION)
        encode.append((time.perf_counter() - t) * 1000)
    result["tokenize_ms_p50"] = round(statistics.median(encode), 2)
    wrapped = []  # the same texts through transformers' tokenizer call, as before 2026-11-22
    for q, docs in one[1:11]:
        texts = [format_query_part(q, DEFAULT_INSTRUCTION), *map(format_document_part, docs)]
        t = time.perf_counter()
        engine.tokenizer(texts, add_special_tokens=False)
        wrapped.append((time.perf_counter() - t) * 1000)
    result["tokenize_transformers_call_ms_p50"] = round(statistics.median(wrapped), 2)

    # two fresh queries, then the first of them again (its batch shapes all recorded by then)
    result["timeline"] = [timeline(reranker, q, docs) for q, docs in (*one[14:16], one[14])]

    def profiled(top: int = 25) -> dict[str, Any]:
        """GPU work of three queries, per query: busy time, by kind, the top kernels."""
        queries = one[11:14]
        work = kernel_ms(lambda: [reranker.rerank(q, docs) for q, docs in queries], top, 3)
        return {
            "profiled_wall_ms_per_query": work["wall_ms"],
            "gpu_busy_ms_per_query": work["busy_ms"],
            "kernel_ms_by_kind": work["by_kind"],
            "kernel_ms_total": work["total_ms"],
            "memsets_per_query": work["memsets"],
            "top_kernels": work["top"],
        }

    result.update(profiled())
    if packed.gate is not _silu_gate and not args.quick:
        # The MLP's gate/up matmul and SiLU gate in one kernel (the default) against cuBLAS +
        # inductor's kernel: p50s of the same queries in alternating rounds, then the GPU work.
        fused, rounds = packed.gate, {"fused": [], "unfused": []}
        for _ in range(3):
            for name, gate in (("fused", fused), ("unfused", _silu_gate)):
                packed.gate = gate
                for _ in range(3):
                    reranker.rerank(*one[0])  # compiled and recorded the first time
                rounds[name].append(p50_ms(one[1:11]))
        result["wall_ms_p50_fused_vs_unfused_mlp"] = rounds
        unfused = profiled(top=8)
        result["unfused_mlp"] = {
            k: v for k, v in unfused.items() if k != "profiled_wall_ms_per_query"
        }
        packed.gate = fused
    if args.quick:
        return write(Path(args.out), result)

    # The same query's packed shape, for the parts timed alone.
    batch = pack(
        [encoded.query_ids],
        [(0, d + encoded.suffix_ids) for d in encoded.document_ids],
    ).to(torch.device("cuda"))
    rows = int(batch.cu_q[-1])
    result["packed_tokens"] = rows
    layers = len(packed.layers)
    dt = packed.dtype
    weights = [packed.layers[0][i] for i in (1, 4, 6, 7)]  # qkv, o, gate_up, down
    inputs = [torch.randn(rows, w.shape[1], device="cuda", dtype=dt) for w in weights]

    def matmuls_bf16() -> None:
        for _ in range(layers):
            for x, w in zip(inputs, weights, strict=True):
                x @ w.t()

    flops = 2 * rows * sum(w.shape[0] * w.shape[1] for w in weights) * layers
    ms = best_ms(matmuls_bf16)
    result["matmuls_bf16_ms"] = round(ms, 2)
    result["matmuls_bf16_tflops"] = round(flops / ms / 1e9, 1)

    fp8 = torch.float8_e4m3fn
    w_scale = [w.float().abs().amax(dim=1, keepdim=True) / 448 for w in weights]
    w8 = [(w.float() / s).to(fp8) for w, s in zip(weights, w_scale, strict=True)]

    def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = x.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 448
        return (x.float() / scale).to(fp8), scale

    x8 = [quantize(x) for x in inputs]
    try:

        def matmuls_fp8() -> None:
            for _ in range(layers):
                for (x, xs), w, ws in zip(x8, w8, w_scale, strict=True):
                    torch._scaled_mm(x, w.t(), scale_a=xs, scale_b=ws.t(), out_dtype=dt)

        ms = best_ms(matmuls_fp8)
        result["matmuls_fp8_rowwise_ms"] = round(ms, 2)
        result["matmuls_fp8_rowwise_tflops"] = round(flops / ms / 1e9, 1)

        def quantize_all() -> None:
            for _ in range(layers):
                for x in inputs:
                    quantize(x)

        result["fp8_quantize_eager_ms"] = round(best_ms(quantize_all), 2)
    except (RuntimeError, TypeError) as exc:
        result["matmuls_fp8_error"] = str(exc)[:300]

    heads, kv_heads, hd = packed.heads, packed.kv_heads, packed.head_dim
    q = torch.randn(rows, heads, hd, device="cuda", dtype=dt)
    k = torch.randn(rows, kv_heads, hd, device="cuda", dtype=dt)
    v = torch.randn(rows, kv_heads, hd, device="cuda", dtype=dt)

    def gathers() -> None:
        for _ in range(layers):
            k[batch.key_index]
            v[batch.key_index]

    # attention alone for one batch's layers: FlashAttention with its key/value gathers, and
    # the Triton prefix kernel that reads the packed rows in place
    for name, kernel in (("flash", attention_flash), ("prefix", attention_prefix)):

        def attention(kernel: Any = kernel) -> None:
            for _ in range(layers):
                kernel(q, k, v, batch, packed.scale)

        result[f"attention_{name}_ms"] = round(best_ms(attention), 2)

    # CPU cost of launching one full batch, next to its GPU time: if launching takes as long
    # as running, the GPU waits on Python, whatever the kernels.
    docs, used = [], 0
    for d in encoded.document_ids:
        used += len(d) + len(encoded.suffix_ids)
        if used > engine.max_batch_tokens - len(encoded.query_ids):
            break
        docs.append((0, d + encoded.suffix_ids))
    full = pack([encoded.query_ids], docs)
    launch: dict[str, float] = {}
    for name, fn in {
        "score_one_batch": lambda: packed.score(full),
        "pack_one_batch": lambda: pack([encoded.query_ids], docs),
        "to_device": lambda: full.to(torch.device("cuda")),
    }.items():
        fn()
        cpu, wall = [], []
        for _ in range(5):  # from an idle GPU each time: a full launch queue would block the CPU
            torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            cpu.append(time.perf_counter() - t)
            torch.cuda.synchronize()
            wall.append(time.perf_counter() - t)
        launch[f"{name}_cpu_ms"] = round(statistics.median(cpu) * 1000, 2)
        launch[f"{name}_wall_ms"] = round(statistics.median(wall) * 1000, 2)
    launch["tokens"] = int(full.cu_q[-1])
    result["launch"] = launch
    with profile(activities=[ProfilerActivity.CPU]) as cpu_prof:  # what launching costs
        torch.cuda.synchronize()
        packed.score(full)
        torch.cuda.synchronize()
    result["launch_cpu_ops"] = [
        {"self_cpu_ms": round(e.self_cpu_time_total / 1000, 3), "calls": e.count, "op": e.key}
        for e in sorted(cpu_prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:25]
    ]
    result["kv_gathers_ms"] = round(best_ms(gathers), 2)
    reranker.close()
    return write(Path(args.out), result)


def write(out: Path, result: dict[str, Any]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency_probe.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "top_kernels"}, indent=1))
    for entry in result["top_kernels"][:15]:
        print(entry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
