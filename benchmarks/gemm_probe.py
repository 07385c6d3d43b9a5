"""How fast cuBLAS runs the 0.6B model's four projections, by weight layout and rows (CUDA).

    python benchmarks/gemm_probe.py --out OUT

vLLM's matmuls for one rag100x256 query ran at ~780 TFLOP/s on the H100 where ours ran at
~690 (benchmarks/results/probes/vllm_probe.json, latency_probe_first_piece.json), with other
cuBLAS kernels. This times each projection (qkv, o, gate_up, down) in bf16 for several row
counts, with the weight stored ``[out, in]`` and multiplied as ``x @ w.t()`` (as the engine
does, and ``F.linear``) or stored transposed ``[in, out]`` and multiplied as ``x @ w``.
Writes OUT/gemm_probe.json: TFLOP/s per shape and the total for one layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from latency_probe import best_ms  # noqa: E402

PROJECTIONS = {
    "qkv": (1024, 4096),
    "o": (2048, 1024),
    "gate_up": (1024, 6144),
    "down": (3072, 1024),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", default="2816,5632,8192,9216,12288,16384")
    args = parser.parse_args()
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "shapes": {}}
    for rows in (int(r) for r in args.rows.split(",")):
        for layout in ("w.t()", "w_in_out"):
            per: dict[str, float] = {}
            total_ms = flops = 0.0
            for name, (k, n) in PROJECTIONS.items():
                x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
                w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
                if layout == "w.t()":
                    ms = best_ms(lambda x=x, w=w: x @ w.t(), reps=20)
                else:
                    wt = w.t().contiguous()
                    ms = best_ms(lambda x=x, wt=wt: x @ wt, reps=20)
                per[name] = round(2 * rows * k * n / ms / 1e9, 1)
                total_ms += ms
                flops += 2 * rows * k * n
            result["shapes"][f"{rows} {layout}"] = {
                "tflops": per,
                "layer_tflops": round(flops / total_ms / 1e9, 1),
                "layer_ms": round(total_ms, 4),
            }
            print(rows, layout, result["shapes"][f"{rows} {layout}"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gemm_probe.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
