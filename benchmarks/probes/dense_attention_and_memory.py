"""Device probe (experiment, see git history): dense cuDNN vs varlen flash attention by document
length, and whole-GPU memory by stage. Run: python benchmarks/probes/dense_attention_and_memory.py
MODEL OUT attn|mem  (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True for the second memory run)."""
import json, os, subprocess, sys, time
from pathlib import Path
import torch
sys.path.insert(0, "benchmarks")
from transformers import AutoTokenizer
from workloads import build, single_token_words
from qwen3_rerank import Reranker

model = sys.argv[1]; out = Path(sys.argv[2]); mode = sys.argv[3]
def smi():
    return int(subprocess.run(["nvidia-smi","--query-gpu=memory.used","--format=csv,noheader,nounits"],capture_output=True,text=True).stdout.split()[0])
res = {"mode": mode, "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")}
tok = AutoTokenizer.from_pretrained(model)
wl = build(tok)
torch.zeros(1, device="cuda"); torch.cuda.synchronize()
res["smi_context"] = smi()
rr = Reranker(model, device="cuda")
eng = rr.engine; pk = eng._packed
res["long_attention"] = getattr(pk.long_attention, "__name__", None)
res["max_batch_tokens"] = eng.max_batch_tokens
res["smi_loaded"] = smi(); res["alloc_loaded"] = torch.cuda.memory_allocated()/2**30
def bench(fn, n=3):
    fn(); best = 1e9
    for _ in range(n):
        torch.cuda.synchronize(); t = time.perf_counter(); fn(); torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best
if mode == "attn":
    words = single_token_words(tok)
    import random; rng = random.Random(1)
    text = lambda n: " ".join(rng.choice(words) for _ in range(n))
    q = text(20)
    rows = {}
    for n, count in [(128, 200), (256, 100), (512, 60), (1024, 32), (2048, 16), (4000, 16)]:
        docs = [text(n) for _ in range(count)]
        row = {}
        for name, thr in [("flash", 10**9), ("dense", 0)]:
            pk.dense_from = thr
            t = bench(lambda: rr.score(q, docs))
            row[name] = round(count / t, 1)
        rows[n] = row; print(n, row, flush=True)
    res["pairs_per_s_by_doc_len"] = rows
    pk.dense_from = 1024
else:
    torch.cuda.reset_peak_memory_stats()
    for name in ["rag100x256", "mixed16x100", "long16x4000"]:
        w = wl[name]
        t = bench(lambda: rr.rerank_batch(w.queries, w.documents))
        lat = []
        for _ in range(10):
            torch.cuda.synchronize(); t0 = time.perf_counter(); rr.score(w.queries[0], w.documents[0]); torch.cuda.synchronize(); lat.append(time.perf_counter()-t0)
        res[name] = {"pairs_per_s": round(w.pairs / t, 1), "p50_ms": round(sorted(lat)[5]*1000, 1), "smi": smi(),
                     "alloc_peak": round(torch.cuda.max_memory_allocated()/2**30, 3), "reserved_peak": round(torch.cuda.max_memory_reserved()/2**30, 3),
                     "reserved": round(torch.cuda.memory_reserved()/2**30, 3)}
        print(name, res[name], flush=True)
out.mkdir(parents=True, exist_ok=True)
(out / f"probe_{mode}_{'exp' if os.environ.get('PYTORCH_CUDA_ALLOC_CONF') else 'plain'}.json").write_text(json.dumps(res, indent=1))
