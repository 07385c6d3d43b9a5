"""Our server (torch engine) against `vllm serve`, over HTTP, on the same GPU and model.

    python benchmarks/serve_bench.py --model MODEL --out OUT

1. Check: the in-process torch engine scores a sample of the workloads; then `vllm serve` with
   the official Qwen3-Reranker overrides scores them through our client (``api="vllm"``, which
   applies the Qwen3 template), and our own server through ``api="qwen3"``. Max abs diffs are
   reported.
2. Speed: the workloads of shared/design/performance.md, one request per query, 16 in flight
   (our client, ``max_concurrency=16``), best of 3 passes after a warm-up, each pass on fresh
   inputs of the same shape (and, apart, 3 passes replaying the warm-up's inputs, which vLLM's
   prefix cache partly skips), against each server
   in turn (one server on the GPU at a time); whole-GPU memory polled with nvidia-smi while
   the server runs. Writes OUT/serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import GpuMemory, query_gpu  # noqa: E402
from engines import batch_scores  # noqa: E402
from qwen3_rerank import Reranker  # noqa: E402
from qwen3_rerank.engines.vllm import QWEN3_RERANKER_OVERRIDES  # noqa: E402
from qwen3_rerank.workloads import Workload, build  # noqa: E402

CONCURRENCY = 16


def sample(workloads: dict[str, Workload]) -> tuple[list[str], list[list[str]]]:
    """Pairs for the score check: one rag100x256 query and four mixed16x100 queries."""
    rag, mixed = workloads["rag100x256"], workloads["mixed16x100"]
    return rag.queries[:1] + mixed.queries[:4], rag.documents[:1] + mixed.documents[:4]


def max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


def wait_healthy(url: str, proc: subprocess.Popen[Any], limit: float = 900) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not healthy after {limit} s")


def time_server(
    url: str, api: str, model: str | None, variants: list[dict[str, Workload]], gpu: GpuMemory
) -> dict[str, Any]:
    """Best of 3 passes, each on fresh inputs (variants 1-3), after a warm-up on variant 0;
    then 3 passes replaying variant 0, which a server with a prefix cache partly skips."""
    rr = Reranker.remote(url, model=model, api=api, max_concurrency=CONCURRENCY, timeout=600)

    def timed(wl: Workload) -> float:
        t = time.perf_counter()
        rr.rerank_batch(wl.queries, wl.documents)
        return time.perf_counter() - t

    out: dict[str, Any] = {}
    for name, wl in variants[0].items():
        gpu.reset()
        timed(wl)  # warm-up
        best = min(timed(v[name]) for v in variants[1:4])
        repeat = min(timed(wl) for _ in range(3))
        out[name] = {
            "pairs_per_s": round(wl.pairs / best, 1),
            "repeat_pairs_per_s": round(wl.pairs / repeat, 1),
            "gpu_peak_gib": round(gpu.peak_gib(), 3),
        }
        print(api, name, out[name], flush=True)
    rr.close()
    return out


def serve(cmd: list[str], url: str, log: Path) -> tuple[subprocess.Popen[Any], float]:
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, wait_healthy(url, proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    time.sleep(3)  # let the GPU memory go


def table(result: dict[str, Any]) -> str:
    """serve.json as markdown: pairs/s and whole-GPU memory per server and workload."""
    servers = result["servers"]
    names = list(next(iter(servers.values()))["workloads"])
    lines = [
        f"# Servers over HTTP: {result['device']}",
        "",
        f"One request per query, {result['concurrency']} in flight; best of 3 passes on fresh "
        "inputs after a warm-up; whole-GPU memory polled with nvidia-smi. Score check: max "
        f"|server score - in-process torch engine score| over {result['check_pairs']} pairs.",
        "",
        "| server | check diff | "
        + " | ".join(f"{n} pairs/s | repeated input | GiB" for n in names)
        + " |",
        "|---|---|" + "---|---|---|" * len(names),
    ]
    for name, entry in servers.items():
        cells = []
        for n in names:
            w = entry["workloads"][n]
            cells.append(
                f"{w['pairs_per_s']} | {w.get('repeat_pairs_per_s', '-')} | {w['gpu_peak_gib']:.2f}"
            )
        lines.append(
            f"| {name} | {entry['max_abs_diff_vs_torch_engine']} | " + " | ".join(cells) + " |"
        )
    if "ours_over_vllm" in result:
        ratios = ", ".join(f"{n} {r}" for n, r in result["ours_over_vllm"].items())
        lines += ["", f"ours / vllm serve: {ratios}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--servers", default="vllm,ours")
    parser.add_argument("--workloads", default="rag100x256,mixed16x100,long16x4000")
    parser.add_argument("--device", default="cuda", help="for the torch engine (cpu: a smoke test)")
    parser.add_argument("--reference-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", action="store_true", help="rewrite OUT/serve.md only")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        (out / "serve.md").write_text(table(json.loads((out / "serve.json").read_text())))
        return 0
    if args.reference_child:  # a process of its own, so that its CUDA memory is gone after
        queries, docs = json.loads((out / ".sample.json").read_text())
        with Reranker(args.model, engine="torch", device=args.device) as rr:
            (out / ".reference.json").write_text(json.dumps(batch_scores(rr, queries, docs)))
        return 0
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    queries, docs = sample(build(tokenizer))
    names = args.workloads.split(",")
    variants = [{n: w for n, w in build(tokenizer, seed=s).items() if n in names} for s in range(4)]
    (out / ".sample.json").write_text(json.dumps([queries, docs]))
    cmd = [sys.executable, __file__, "--model", args.model, "--out", args.out]
    subprocess.run([*cmd, "--device", args.device, "--reference-child"], check=True)
    reference = json.loads((out / ".reference.json").read_text())
    result: dict[str, Any] = {
        "device": query_gpu("name"),
        "concurrency": CONCURRENCY,
        "check_pairs": sum(len(d) for d in docs),
        "servers": {},
    }
    gpu = GpuMemory()
    for server in args.servers.split(","):
        port = 8101 if server == "vllm" else 8102
        url = f"http://127.0.0.1:{port}"
        if server == "vllm":
            cmd = [
                sys.executable,
                "-m",
                "vllm.entrypoints.cli.main",
                "serve",
                args.model,
                "--runner",
                "pooling",
                "--hf-overrides",
                json.dumps(QWEN3_RERANKER_OVERRIDES),
                "--port",
                str(port),
            ]
            api, model = "vllm", args.model
        else:
            cmd = [sys.executable, "-m", "qwen3_rerank.cli", "serve", "--model", args.model]
            cmd += ["--engine", "torch", "--device", args.device, "--port", str(port)]
            api, model = "qwen3", None
        gpu.reset()
        proc, started = serve(cmd, url, out / f"serve_{server}.log")
        try:
            rr = Reranker.remote(url, model=model, api=api, max_concurrency=CONCURRENCY)
            got = batch_scores(rr, queries, docs)
            rr.close()
            entry: dict[str, Any] = {
                "start_s": round(started, 1),
                "max_abs_diff_vs_torch_engine": round(max_diff(got, reference), 5),
                "workloads": time_server(url, api, model, variants, gpu),
            }
        finally:
            stop(proc)
        result["servers"][server] = entry
        print(server, {k: v for k, v in entry.items() if k != "workloads"}, flush=True)
        (out / "serve.json").write_text(json.dumps(result, indent=1))
    gpu.close()
    if {"vllm", "ours"} <= result["servers"].keys():
        result["ours_over_vllm"] = {
            name: round(
                result["servers"]["ours"]["workloads"][name]["pairs_per_s"]
                / result["servers"]["vllm"]["workloads"][name]["pairs_per_s"],
                2,
            )
            for name in names
        }
    (out / "serve.json").write_text(json.dumps(result, indent=1))
    (out / "serve.md").write_text(table(result))
    for f in (out / ".reference.json", out / ".sample.json"):
        f.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    sys.exit(main())
