"""What launching one packed batch costs the CPU, op by op (CUDA only).

    python benchmarks/launch_probe.py --model MODEL --out OUT [--max-memory 1.5GiB]

While the GPU runs one batch, the CPU tokenizes the next piece and launches the next batch;
when a launch takes longer than the batch before it, the GPU waits. This runs four rag100x256
queries (after three warm-up rounds, so every batch replays a recorded CUDA graph) with the
torch profiler on, and for each ``PackedQwen3.score`` call reports its rows, its CPU time and
the costliest CPU ops inside it (with ``--max-memory``, batches run the compiled graph
without CUDA graphs and gather their embedding rows on the host). Writes
OUT/launch_probe.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--top", type=int, default=5, help="ops listed per launch")
    parser.add_argument("--max-memory", help="the engine's max_memory option, e.g. 1.5GiB")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile, record_function
    from transformers import AutoTokenizer

    from qwen3_rerank import Reranker
    from qwen3_rerank.workloads import build

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    queries = [build(tokenizer, seed=s)["rag100x256"] for s in range(4)]
    one = [(wl.queries[0], wl.documents[0]) for wl in queries]
    reranker = Reranker(args.model, device="cuda", max_memory=args.max_memory)
    packed: Any = reranker.engine._packed
    score = packed.score

    def named(batch: Any) -> Any:
        with record_function(f"score {len(batch.tokens)} rows"):
            return score(batch)

    packed.score = named
    for _ in range(3):  # compile and record every batch shape
        for query, docs in one:
            reranker.rerank(query, docs)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for query, docs in one:
            reranker.rerank(query, docs)
    packed.score = score

    cpu = [e for e in prof.events() if e.device_type.name == "CPU"]
    launches: list[dict[str, Any]] = []
    for call in (e for e in cpu if e.name.startswith("score ")):
        start, end = call.time_range.start, call.time_range.end
        inside = [
            e
            for e in cpu
            if e is not call and e.time_range.start >= start and e.time_range.end <= end
        ]
        costliest = sorted(inside, key=lambda e: e.time_range.start - e.time_range.end)
        launches.append(
            {
                "rows": int(call.name.split()[1]),
                "cpu_ms": round((end - start) / 1000, 2),
                "top_ops": [
                    [e.name[:60], round((e.time_range.end - e.time_range.start) / 1000, 2)]
                    for e in costliest[: args.top]
                ],
            }
        )
    by_rows: dict[int, list[float]] = defaultdict(list)
    for launch in launches:
        by_rows[launch["rows"]].append(launch["cpu_ms"])
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "max_memory": args.max_memory,
        "cpu_ms_median_by_rows": {
            str(rows): round(statistics.median(ms), 2) for rows, ms in sorted(by_rows.items())
        },
        "launches": launches,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "launch_probe.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["cpu_ms_median_by_rows"]))
    for launch in launches:
        print(launch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
