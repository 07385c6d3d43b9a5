"""Turns a benchmark JSON into a markdown table and a PNG chart (no GPU needed).

    python benchmarks/report.py benchmarks/results/results.json      # needs matplotlib

Writes STEM.md and STEM.png beside the JSON (STEM: its name without .json). Every number
comes from the JSON; ratios are against the vLLM engine measured in the same run. Accuracy is
each engine's bf16 scores against the fp32 reference (transformers' model in float32) on the
same weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ENGINES = [
    "card",
    "transformers",
    "vllm",
    "vllm_kv1g",
    "vllm_engine",
    "vllm_engine_kv3g",
    "ours",
    "ours_1.5gib",
    "ours_fp8",
]
WORKLOADS = ["rag100x256", "mixed16x100", "long16x4000"]


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = float(rank)
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = _ranks(a), _ranks(b)
    n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) / (n * (n * n - 1))


def accuracy(results: dict[str, Any], engine: str, workload: str) -> tuple[float, float] | None:
    """(max |score - fp32 score|, min Spearman over queries) for an engine on a workload."""
    ref = results["engines"].get("reference_fp32", {}).get("scores", {}).get(workload)
    got = results["engines"].get(engine, {}).get("scores", {}).get(workload)
    if not ref or not got:
        return None
    diff = max(abs(x - y) for g, r in zip(got, ref, strict=True) for x, y in zip(g, r, strict=True))
    rho = min(spearman(g, r) for g, r in zip(got, ref, strict=True) if len(g) > 2)
    return diff, rho


def _fresh(results: dict[str, Any]) -> bool:
    """Whether the run timed fresh inputs (it then also reports repeated-input figures)."""
    rows = [r for w in results["workloads"].values() for r in w.values() if r]
    return any("repeat_pairs_per_s" in r for r in rows)


def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(results: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark: {results['device']}",
        "",
        f"torch {results['torch']}; dense bf16 matmul measured at {results['peak_bf16_tflops']} "
        "TFLOP/s in the same run. Random weights with the exact Qwen3-Reranker-0.6B config, real "
        "tokenizer, bf16. pairs/s is the best of 3 passes after a warm-up (the better of one call "
        "per query and one call for the whole workload where the engine has both); p50/p99 are "
        "latencies of one query of the workload; torch peak = torch.cuda.max_memory_allocated "
        "(in-process engines); GPU peak = whole-GPU memory used (nvidia-smi every 50 ms). "
        "Accuracy: max |score - fp32 reference| and the lowest per-query Spearman correlation. "
        + (
            "Timed passes use fresh inputs of the workload's shape; 'repeated input' replays the "
            "warm-up's inputs, which vLLM's prefix cache partly skips."
            if _fresh(results)
            else "This run timed the warm-up's inputs again on every pass (an older method: "
            "vLLM's prefix cache partly skips repeated inputs)."
        ),
        "",
    ]
    for w in WORKLOADS:
        rows = results["workloads"].get(w, {})
        vllm = (rows.get("vllm") or {}).get("pairs_per_s")
        lines += [
            f"## {w}",
            "",
            "| engine | pairs/s | x vLLM | tokens/s | FLOP-limit fraction | p50 ms | p99 ms "
            "| torch peak GiB | GPU peak GiB | max diff vs fp32 | Spearman "
            "| pairs/s, repeated input |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for e in ENGINES:
            r = rows.get(e)
            if not r:
                lines.append(f"| {e} | not run | | | | | | | | | | |")
                continue
            pps = r.get("pairs_per_s")
            acc = accuracy(results, e, w)
            lines.append(
                f"| {e} | {fmt(pps)} | {fmt(pps / vllm if pps and vllm else None, '.2f')} "
                f"| {fmt(r.get('tokens_per_s'), '.0f')} | {fmt(r.get('flop_fraction'), '.3f')} "
                f"| {fmt(r.get('p50_ms'))} | {fmt(r.get('p99_ms'))} "
                f"| {fmt(r.get('torch_peak_gib'), '.2f')} | {fmt(r.get('gpu_peak_gib'), '.2f')} "
                f"| {fmt(acc[0] if acc else None, '.4f')} | {fmt(acc[1] if acc else None, '.4f')} "
                f"| {fmt(r.get('repeat_pairs_per_s'))} |"
            )
        lines.append("")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(ENGINES)
    # without vLLM in the run there is no ratio to draw: plain pairs/s instead
    relative = all(
        (results["workloads"][w].get("vllm") or {}).get("pairs_per_s") for w in WORKLOADS
    )
    for i, e in enumerate(ENGINES):
        speeds = [
            ((results["workloads"][w].get(e) or {}).get("pairs_per_s") or 0) for w in WORKLOADS
        ]
        vllm = [
            (results["workloads"][w]["vllm"]["pairs_per_s"] if relative else 1) for w in WORKLOADS
        ]
        memory = [
            ((results["workloads"][w].get(e) or {}).get("gpu_peak_gib") or 0) for w in WORKLOADS
        ]
        xs = [j + (i - len(ENGINES) / 2) * width for j in range(len(WORKLOADS))]
        axes[0].bar(xs, [s / v for s, v in zip(speeds, vllm, strict=True)], width, label=e)
        axes[1].bar(xs, memory, width, label=e)
    speed_title = "throughput / vLLM (same run)" if relative else "pairs/s (no vLLM in this run)"
    for ax, title in zip(axes, (speed_title, "whole-GPU memory, GiB"), strict=True):
        ax.set_xticks(range(len(WORKLOADS)), WORKLOADS)
        ax.set_title(title)
    if relative:
        axes[0].axhline(1.0, color="gray", linewidth=0.8)
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Qwen3-Reranker-0.6B shape on {results['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/results.json")
    results = json.loads(source.read_text())
    source.with_suffix(".md").write_text(table(results) + "\n")
    chart(results, source.with_suffix(".png"))
    print(source.with_suffix(".md"), source.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
