"""The MLP's gate/up matmul and SiLU gate: cuBLAS + inductor's kernel against one Triton kernel.

    python benchmarks/mlp_probe.py --out OUT [--rows 4608,9216,16384]

The engine's compiled graph runs ``x @ gate_up.T`` in cuBLAS, then a fused elementwise kernel
reads the ``[rows, 6144]`` product back to write ``silu(gate) * up``: 4.4 ms of a
100-document query's ~55 ms of GPU work on the H100. ``core/qwen3_rerank/engines/gated_mlp.py``
does both in one kernel. This times, on the 0.6B model's shapes (hidden 1024, intermediate
3072), the compiled baseline against the kernel in several tilings, with one program per SM
(as the engine runs it) or one per tile, and a variant that loads its tiles through TMA
descriptors (Triton 3.4+). Earlier versions of this probe also timed more tilings, TMA with
one program per tile and a flattened persistent loop (probes/README.md). GPU time by CUDA
events around 20 back-to-back calls replayed from a CUDA graph (as the engine runs them: no
launch gaps), the median of seven rounds with the variants interleaved. Writes
OUT/mlp_probe.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "core"))

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from qwen3_rerank.engines import gated_mlp  # noqa: E402
from qwen3_rerank.engines.gated_mlp import gated, tile_origin  # noqa: E402

HIDDEN, INTER = 1024, 3072
CONFIGS = [  # BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages
    (128, 128, 64, 8, 8, 3),
    (128, 128, 64, 8, 8, 4),
    (128, 128, 32, 8, 8, 4),
    (128, 128, 32, 4, 8, 4),
]
PERSISTENT = [
    (128, 128, 64, 8, 8, 3),
    (128, 128, 64, 8, 8, 4),
    (128, 128, 32, 8, 8, 4),
    (128, 64, 64, 8, 8, 4),
    (64, 128, 64, 8, 4, 4),
]


@triton.jit
def _persistent_kernel(
    x_desc,
    w_desc,
    o_desc,
    rows,
    INTER: tl.constexpr,
    HIDDEN: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    PROGRAMS: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr,
):
    """The engine's kernel with its tiles loaded and stored through TMA descriptors (one
    program per SM stepping through the tiles); with WARP_SPECIALIZE, Triton's automatic
    warp specialization (producer warps issue the loads, consumer warps multiply)."""
    tiles = tl.cdiv(rows, BLOCK_M) * (INTER // BLOCK_N)
    for tile in tl.range(tl.program_id(0), tiles, PROGRAMS, warp_specialize=WARP_SPECIALIZE):
        off_m, off_n = tile_origin(tile, rows, INTER, BLOCK_M, BLOCK_N, GROUP_M)
        gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(0, HIDDEN, BLOCK_K):
            x = x_desc.load([off_m, k])
            gate = tl.dot(x, w_desc.load([off_n, k]).T, gate)
            up = tl.dot(x, w_desc.load([INTER + off_n, k]).T, up)
        o_desc.store([off_m, off_n], gated(gate, up, o_desc.dtype))


def tma_launch(
    x: torch.Tensor, w: torch.Tensor, config: dict[str, int], ws: bool = False
) -> torch.Tensor:
    from triton.tools.tensor_descriptor import TensorDescriptor

    rows = x.shape[0]
    out = x.new_empty(rows, INTER)
    bm, bn, bk = config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_K"]
    programs = min(
        torch.cuda.get_device_properties(x.device).multi_processor_count,
        triton.cdiv(rows, bm) * (INTER // bn),
    )
    _persistent_kernel[(programs,)](
        TensorDescriptor.from_tensor(x, [bm, bk]),
        TensorDescriptor.from_tensor(w, [bn, bk]),
        TensorDescriptor.from_tensor(out, [bm, bn]),
        rows,
        INTER=INTER,
        HIDDEN=HIDDEN,
        PROGRAMS=programs,
        WARP_SPECIALIZE=ws,
        **config,
    )
    return out


def baseline(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """What the engine's graph does now (compiled: cuBLAS, then inductor's fused kernel)."""
    gate, up = (x @ w.t()).chunk(2, dim=-1)
    return F.silu(gate) * up


CALLS = 20


def graphed(fn: Any) -> torch.cuda.CUDAGraph:
    """``CALLS`` calls of ``fn`` captured in one CUDA graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()  # compiled, autotuned and warm before capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(CALLS):
            fn()
    return graph


def gpu_ms(graph: torch.cuda.CUDAGraph) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / CALLS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", default="4608,9216,16384")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    compiled = torch.compile(baseline, dynamic=False)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "rows": {},
    }
    gen = torch.Generator(device="cuda").manual_seed(0)
    for rows in (int(r) for r in args.rows.split(",")):
        x = torch.randn(rows, HIDDEN, device="cuda", generator=gen).to(torch.bfloat16)
        w = (torch.randn(2 * INTER, HIDDEN, device="cuda", generator=gen) / 32).to(torch.bfloat16)
        want = compiled(x, w).float()
        variants: dict[str, Any] = {"baseline": lambda x=x, w=w: compiled(x, w)}
        diffs: dict[str, float] = {}
        for c in dict.fromkeys(CONFIGS + PERSISTENT):
            config = dict(zip(("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"), c[:4], strict=True))
            config.update(num_warps=c[4], num_stages=c[5])
            label = "/".join(map(str, c))
            kinds = {
                "ptr": gated_mlp._launch,  # persistent
                "ptr_one_tile": lambda x, w, c: gated_mlp._launch(x, w, c, programs=2**30),
                "tma_persistent": tma_launch,
                "tma_ws": lambda x, w, c: tma_launch(x, w, c, ws=True),
            }
            for kind, launch in kinds.items():
                if c not in (PERSISTENT if kind.startswith("tma") else CONFIGS):
                    continue
                fn = lambda x=x, w=w, config=config, launch=launch: launch(x, w, config)  # noqa: E731
                try:
                    got = fn().float()
                except Exception as exc:  # out of shared memory, or a Triton without TMA
                    print(rows, kind, label, "failed:", str(exc).splitlines()[0][:200], flush=True)
                    continue
                variants[f"{kind} {label}"] = fn
                diffs[f"{kind} {label}"] = round(float((got - want).abs().max()), 5)
        graphs = {name: graphed(fn) for name, fn in variants.items()}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for graph in graphs.values():  # warm up
            gpu_ms(graph)
        for _ in range(args.rounds):
            for name, graph in graphs.items():
                times[name].append(gpu_ms(graph))
        flops = 2 * rows * HIDDEN * 2 * INTER
        entry = {
            name: {
                "ms": round(statistics.median(t), 4),
                "tflops": round(flops / statistics.median(t) / 1e9, 1),
                "max_diff_vs_baseline": diffs.get(name, 0.0),
            }
            for name, t in times.items()
        }
        alone = graphed(lambda x=x, w=w: x @ w.t())
        entry["cublas_matmul_alone"] = {
            "ms": round(statistics.median(gpu_ms(alone) for _ in range(5)), 4)
        }
        del graphs, alone
        result["rows"][str(rows)] = entry
        best = min((v["ms"], k) for k, v in entry.items() if k != "cublas_matmul_alone")
        print(rows, json.dumps(entry), "best:", best, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mlp_probe.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
