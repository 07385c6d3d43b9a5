"""How the residual add is written changes what inductor makes of it (CUDA only).

    python benchmarks/residual_probe.py --out OUT

Four layers' worth of the engine's ``_pre_attention`` + ``_post_attention`` (attention left
out: q is used as its output) on one 9216-token batch of the 0.6B shapes, compiled three ways:
``x + a @ b`` as written (inductor makes ``addmm``, copying ``x`` first), the engine's
``_residual`` as it is, and the add through a leading unit dimension. Reports the GPU time per
call and the kernels by name. Writes OUT/residual_probe.json.
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
sys.path.insert(0, str(HERE.parent / "core"))

from latency_probe import best_ms, kernel_ms  # noqa: E402
from qwen3_rerank.engines import packed  # noqa: E402

VARIANTS = {
    "plain": lambda x, u: x + u,
    "engine": packed._residual,
    "leading_unit_dim": lambda x, u: (x[None] + u[None])[0],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokens", type=int, default=9216)
    args = parser.parse_args()
    dev, bf = "cuda", torch.bfloat16
    torch.manual_seed(0)

    def w(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=dev, dtype=bf) / shape[-1] ** 0.5

    t, layers = args.tokens, 4
    weights = [
        (w(4096, 1024), w(1024, 2048), w(6144, 1024), w(1024, 3072), torch.ones(1024, device=dev))
        for _ in range(layers)
    ]
    ones = torch.ones(128, device=dev, dtype=bf)
    cos, sin = torch.ones(t, 128, device=dev, dtype=bf), torch.zeros(t, 128, device=dev, dtype=bf)
    x0 = torch.randn(t, 1024, device=dev, dtype=bf)

    def layers_fn(x: torch.Tensor) -> torch.Tensor:
        for qkv_w, o_w, gu_w, d_w, norm in weights:
            q, _, _ = packed._pre_attention(
                x, cos, sin, norm.to(bf), qkv_w, ones, ones, 16, 8, 128, 1e-6, True
            )
            x = packed._post_attention(x, q, o_w, norm.to(bf), gu_w, d_w, 1e-6)
        return x

    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "tokens": t}
    original = packed._residual
    for name, fn in VARIANTS.items():
        packed._residual = fn
        torch._dynamo.reset()
        compiled = torch.compile(layers_fn)
        ms = best_ms(lambda c=compiled: c(x0), reps=10)
        costliest = kernel_ms(lambda c=compiled: c(x0), top=1000)["top"]
        result[name] = {
            "ms_per_call": round(ms, 3),
            "kernels": {k["name"]: [k["ms"], k["calls"]] for k in costliest},
        }
        print(name, result[name]["ms_per_call"], flush=True)
    packed._residual = original
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "residual_probe.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
