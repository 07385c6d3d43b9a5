"""Where a query's GPU time goes: the engine's kernels, grouped, for one workload.

    python benchmarks/profile_kernels.py --model MODEL --out OUT [--workload long16x4000]
                                         [--attention prefix,fa3]             # CUDA only

For each ``attention`` option, one engine: two warm-up queries of the workload (its first query,
at two seeds), three timed (the best counts), then one fresh query under torch.profiler (CUDA
kernels, CUDA-graph replays included). Kernel time is grouped by what the kernel does (by its
name: cuBLAS/CUTLASS matmuls, attention, Inductor's fused norms and element-wise code, copies,
the rest) against the query's wall time, and the matmuls' time is turned into TFLOP/s from the
dense FLOPs of the projections and MLP; the gaps between kernels say where the GPU waited.
Writes OUT/kernels.json and OUT/kernels.md, with the top kernels by name.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.autograd import DeviceType  # type: ignore[attr-defined]
from torch.profiler import ProfilerActivity, profile

from bench import code_commit, linear_flops  # benchmarks/, this script's folder

# first match wins: attention kernels can contain "gemm"-like words, and Inductor names its
# kernels after every op they fuse (the attention op they feed included)
GROUPS = [
    ("norms, RoPE, element-wise (Inductor)", re.compile(r"^triton_")),
    ("attention", re.compile(r"prefix_attention|flash|fmha|attn|_attend", re.I)),
    ("matmul", re.compile(r"gemm|cutlass|nvjet|xmma|cublas|sm90_|sm100_|gated_mlp", re.I)),
    ("copies", re.compile(r"copy|gather|index|scatter|memcpy|memset", re.I)),
]


def group_of(name: str) -> str:
    return next((group for group, pattern in GROUPS if pattern.search(name)), "other")


def profile_option(model: str, attention: str, workload: str) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from qwen3_rerank import ConfigurationError, Reranker
    from qwen3_rerank.prompt import DEFAULT_INSTRUCTION, PromptEncoder
    from qwen3_rerank.tokenizing import batch_encoder
    from qwen3_rerank.workloads import build

    tokenizer = AutoTokenizer.from_pretrained(model)
    # the first query of the workload at seeds 1, 2 (warm-up), 3-5 (timed), 6 (profiled)
    queries = [build(tokenizer, seed, [workload])[workload].items()[0] for seed in range(1, 7)]
    options: dict[str, Any] = {} if attention == "auto" else {"attention": attention}
    try:
        reranker = Reranker(model, device="cuda", **options)
    except ConfigurationError as exc:
        return {"error": str(exc)[:300]}
    with reranker:
        for query, documents in queries[:2]:
            reranker.score(query, documents)
        best_s = float("inf")
        for query, documents in queries[2:5]:
            start = time.perf_counter()
            reranker.score(query, documents)
            best_s = min(best_s, time.perf_counter() - start)
        query, documents = queries[5]
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            reranker.score(query, documents)
            torch.cuda.synchronize()
            wall_ms = (time.perf_counter() - start) * 1e3
    per_kernel: dict[str, float] = defaultdict(float)
    spans: list[tuple[float, float]] = []  # each kernel's (start, end), microseconds
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            per_kernel[event.name] += event.device_time_total / 1e3
            spans.append((event.time_range.start, event.time_range.end))
    groups: dict[str, float] = defaultdict(float)
    for name, ms in per_kernel.items():
        groups[group_of(name)] += ms
    # the rows the engine computes: the query's prefix once, then each document and suffix
    encoded = PromptEncoder(batch_encoder(tokenizer)).encode(query, documents, DEFAULT_INSTRUCTION)
    rows = len(encoded.query_ids)
    rows += sum(len(ids) + len(encoded.suffix_ids) for ids in encoded.document_ids)
    config = json.loads((Path(model) / "config.json").read_text())
    matmul_ms = groups.get("matmul", 0.0)
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:15]
    return {
        "best_of_3_ms": round(best_s * 1e3, 2),
        "pairs_per_s": round(len(documents) / best_s, 2),
        "wall_ms": round(wall_ms, 2),
        "kernel_ms": round(sum(per_kernel.values()), 2),
        "groups_ms": {k: round(v, 2) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "packed_rows": rows,
        "matmul_tflops": round(linear_flops(config, rows) / matmul_ms / 1e9, 1)
        if matmul_ms
        else None,
        "top_kernels_ms": [[name[:120], round(ms, 2)] for name, ms in top],
        **idle(spans),
    }


def idle(spans: list[tuple[float, float]]) -> dict[str, Any]:
    """From the first kernel's start to the last one's end: how long that is, how much of it
    no kernel ran, and the longest such gaps (ms, with when they began after the first
    kernel): where the GPU waited for the host."""
    if not spans:
        return {}
    spans = sorted(spans)
    gaps, reach = [], spans[0][1]
    for start, end in spans[1:]:
        if start > reach:
            gaps.append((reach, start - reach))
        reach = max(reach, end)
    first = spans[0][0]
    return {
        "gpu_span_ms": round((reach - first) / 1e3, 2),
        "idle_in_span_ms": round(sum(g for _, g in gaps) / 1e3, 2),
        "longest_gaps_ms": [
            [round((at - first) / 1e3, 2), round(g / 1e3, 3)]
            for at, g in sorted(gaps, key=lambda x: -x[1])[:8]
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--workload", default="long16x4000")
    parser.add_argument("--attention", default="prefix,fa3", help="attention options, in turn")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "commit": code_commit() or None,
        "workload": args.workload,
    }
    lines = [f"# Kernel time of one `{args.workload}` query, {result['device']}", ""]
    for attention in args.attention.split(","):
        got = result[attention] = profile_option(args.model, attention, args.workload)
        print(attention, json.dumps(got)[:600], flush=True)
        lines += [f"## attention={attention}", ""]
        if "error" in got:
            lines += [got["error"], ""]
            continue
        lines += [
            f"best of 3 {got['best_of_3_ms']} ms ({got['pairs_per_s']} pairs/s); profiled: "
            f"wall {got['wall_ms']} ms, kernels {got['kernel_ms']} ms, "
            f"projections and MLP at {got['matmul_tflops']} TFLOP/s; first kernel to last "
            f"{got.get('gpu_span_ms')} ms, {got.get('idle_in_span_ms')} ms of it idle, longest "
            f"gaps [after ms, ms] {got.get('longest_gaps_ms')}",
            "",
        ]
        lines += ["| group | ms |", "|---|---|"]
        lines += [f"| {g} | {ms} |" for g, ms in got["groups_ms"].items()]
        lines += ["", "| kernel | ms |", "|---|---|"]
        lines += [f"| `{name}` | {ms} |" for name, ms in got["top_kernels_ms"]]
        lines.append("")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernels.json").write_text(json.dumps(result, indent=1))
    (out / "kernels.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
