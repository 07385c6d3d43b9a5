"""Where the whole-GPU memory of the torch engine goes, stage by stage (CUDA only).

    python benchmarks/memory_probe.py --model MODEL --out OUT [--room-mib 512,768]

For each default-room setting, a child process reads nvidia-smi after creating the CUDA
context, after loading the engine, and after each workload of performance.md, next to
torch's allocated and reserved peaks: the gap between them is the allocator's cache, the
rest is the CUDA context. Writes OUT/memory_probe.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import query_gpu  # noqa: E402


def smi_mib() -> int:
    return int(query_gpu("memory.used"))


def child(model: str, room_mib: int) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from qwen3_rerank import Reranker
    from qwen3_rerank.engines import torch as torch_engine
    from qwen3_rerank.workloads import build

    torch_engine._DEFAULT_GPU_ROOM = room_mib * 2**20
    workloads = build(AutoTokenizer.from_pretrained(model))
    torch.zeros(1, device="cuda")
    result: dict[str, Any] = {"room_mib": room_mib, "smi_context_mib": smi_mib()}
    rr = Reranker(model, device="cuda")
    result["max_batch_tokens"] = rr.engine.max_batch_tokens  # type: ignore[attr-defined]
    result["smi_loaded_mib"] = smi_mib()
    result["allocated_loaded_gib"] = round(torch.cuda.memory_allocated() / 2**30, 3)
    torch.cuda.reset_peak_memory_stats()
    for name, wl in workloads.items():
        rr.rerank_batch(wl.queries, wl.documents)  # warm-up
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            rr.rerank_batch(wl.queries, wl.documents)
            best = min(best, time.perf_counter() - t)
        result[name] = {
            "pairs_per_s": round(wl.pairs / best, 1),
            "smi_mib": smi_mib(),
            "allocated_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "reserved_peak_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3),
        }
    rr.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--room-mib", default="512,768")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.model, args.child)))
        return 0
    runs = []
    for room in args.room_mib.split(","):
        cmd = [sys.executable, __file__, "--model", args.model, "--out", args.out]
        done = subprocess.run([*cmd, "--child", room], capture_output=True, text=True)
        if done.returncode != 0:
            runs.append({"room_mib": int(room), "error": done.stderr[-500:]})
            continue
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_probe.json").write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
