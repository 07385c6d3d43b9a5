"""Is `qwen3-rerank bench`'s one-query p50 slower than latency_probe's because of what runs
before it? One process per mode, on the same host, one after the other:

- ``bench``: as ``qwen3_rerank.bench``: one whole-workload call, two warm-up queries alone,
  three whole-workload passes on fresh inputs (their batch shapes recorded as CUDA graphs);
- ``single``: three warm-up queries alone, nothing else (as ``latency_probe.py``);

then the same 12 fresh rag100x256 queries, one at a time, three passes.

    python latency_ab.py MODEL OUT bench|single

(The run's copy also wrote ``recorded_graphs`` / ``graph_nodes``, the root count of
cudagraph trees' manager through a private API; this copy leaves that out.)
"""

import json
import os
import statistics
import sys
import time

from transformers import AutoTokenizer

from qwen3_rerank import Reranker
from qwen3_rerank.workloads import build

model, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
tokenizer = AutoTokenizer.from_pretrained(model)
variants = [build(tokenizer, s)["rag100x256"] for s in range(16)]
rr = Reranker(model, device="cuda")


def one(wl):
    start = time.perf_counter()
    rr.rerank(wl.queries[0], wl.documents[0])
    return (time.perf_counter() - start) * 1000


warm = variants[0]
if mode == "bench":
    rr.rerank_batch(warm.queries, warm.documents)
    for _ in range(2):
        one(warm)
    for wl in variants[1:4]:
        rr.rerank_batch(wl.queries, wl.documents)
else:
    for _ in range(3):
        one(warm)
result = {"mode": mode}
for p in range(3):
    walls = [one(wl) for wl in variants[4:16]]
    result[f"pass{p}_p50"] = round(statistics.median(walls), 2)
    result[f"pass{p}"] = [round(w, 1) for w in walls]
print(json.dumps(result))
with open(os.path.join(out, f"latency_ab_{mode}.json"), "w") as f:
    json.dump(result, f, indent=1)
