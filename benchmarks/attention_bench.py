"""Attention alone for long documents: our kernels against the best attention on the machine.

    python benchmarks/attention_bench.py --out OUT [--model MODEL]     # CUDA only

For each document length (1k, 2k, 4k, 8k tokens; 16k rows per batch: 16 x 1k ... 2 x 8k),
Qwen3-Reranker-0.6B's heads (16 query heads, 8 key/value heads, head size 128), bf16, causal:

- ours_prefix: the engine's Triton kernel on its packed layout (template head and query prefix
  laid out once, every document attending to them), no gathers;
- ours_flash: the engine's FlashAttention-2 varlen path (PyTorch's kernel, with its gathers);
- ours_fa3: the engine's FlashAttention-3 path (vLLM's build, with the same gathers), where
  vLLM is importable; ours_fa3_paged: that kernel reading the packed keys in place instead,
  through a block table of one-row pages (each sequence's key rows), no gathers;
- cudnn_gathered(_expanded): cuDNN through PyTorch's SDPA on the same packed rows, gathers
  included (each document's keys, and its queries at the same rows, into a padded dense batch),
  key/value heads shared or copied out; and its first call at new shapes (a graph per shape);
- sdpa_cudnn, sdpa_flash: PyTorch's scaled_dot_product_attention forced to cuDNN or to
  FlashAttention-2, each document a batch row of its own;
- flex: FlexAttention (compiled) with a causal block mask;
- flash_attn3 / flash_attn2: the flash-attn packages where importable;
- vllm_fa3 / vllm_fa2: vLLM's build of them (varlen, as vLLM calls it) where vLLM is importable.

Every backend's TFLOP/s counts the same useful work: QK^T and PV over the visible (query, key)
pairs of its own layout. The kernel calls come from the engine's attention module (no public API
exposes a bare kernel); with ``--model``, the engine end to end through its public ``attention``
option (where this commit has it): pairs/s of 1 query x the same documents. With ``--sweep``,
our kernel at each launch configuration of ``SWEEP`` (or of ``--grid``'s values) too (the
engine fixes one); ``--ours-only`` leaves out every other library. Writes OUT/attention.json
and OUT/attention.md and prints the winner per length.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

HEADS, KV_HEADS, HEAD_DIM = 16, 8, 128
HEAD_TOKENS, QUERY_TOKENS = 39, 31  # the template's system part; instruction + query
ROWS = 16384
LENGTHS = (1024, 2048, 4096, 8192)


def median_ms(fn: Callable[[], Any], reps: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def engine_kernels() -> tuple[Callable[..., Any], Callable[..., Any], dict[str, Any]]:
    """``pack``, the batch's move to the GPU, and our attention kernels."""
    from qwen3_rerank.engines.torch.attention import BACKENDS
    from qwen3_rerank.engines.torch.layout import pack
    from qwen3_rerank.engines.torch.transfer import on_device

    kernels: dict[str, Callable[..., Any]] = {
        "ours_prefix": BACKENDS["prefix"],
        "ours_flash": BACKENDS["flash"],
    }
    if (
        "fa3" in BACKENDS
        and BACKENDS["fa3"].unavailable(torch.device("cuda"), torch.bfloat16) is None
    ):
        kernels["ours_fa3"] = BACKENDS["fa3"]
        kernels["ours_fa3_paged"] = fa3_paged
    return pack, on_device, kernels


def fa3_paged(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: Any, scale: float) -> Any:
    """vLLM's FlashAttention-3 over the packed keys in place: pages of one row, each
    sequence's block table its key rows (the table is built per call, as an engine would)."""
    from vllm.vllm_flash_attn import flash_attn_varlen_func

    lk = batch.cu_k[1:] - batch.cu_k[:-1]
    cols = torch.arange(batch.max_k, device=k.device)
    where = (batch.cu_k[:-1, None] + cols).clamp(max=len(batch.key_index) - 1)
    table = torch.where(cols < lk[:, None], batch.key_index[where], 0).to(torch.int32)
    return flash_attn_varlen_func(
        q,
        k[:, None],
        v[:, None],
        batch.max_q,
        batch.cu_q,
        batch.max_k,
        seqused_k=lk.to(torch.int32),
        block_table=table,
        softmax_scale=scale,
        causal=True,
        fa_version=3,
    )


def causal_flops(docs: int, length: int) -> float:
    """QK^T and PV over a causal sequence's visible pairs, times two, all heads."""
    return 4 * docs * length * (length + 1) / 2 * HEAD_DIM * HEADS


def packed_flops(batch: Any) -> float:
    lq = (batch.cu_q[1:] - batch.cu_q[:-1]).double()
    lk = (batch.cu_k[1:] - batch.cu_k[:-1]).double()
    pairs = (lq * (lk - lq) + lq * (lq + 1) / 2).sum().item()
    return 4 * pairs * HEAD_DIM * HEADS


def layout(length: int) -> tuple[list[list[int]], list[tuple[int, list[int]]], list[int]]:
    """``pack``'s arguments for one query and :data:`ROWS` // ``length`` documents of
    ``length`` tokens, after the template's head."""
    return [[2] * QUERY_TOKENS], [(0, [3] * length)] * (ROWS // length), [1] * HEAD_TOKENS


def random_qkv(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random bf16 queries, keys and values on the GPU for the packed rows of ``batch``."""
    rows, dev = int(batch.cu_q[-1]), torch.device("cuda")
    q = torch.randn(rows, HEADS, HEAD_DIM, device=dev, dtype=torch.bfloat16)
    k, v = (torch.randn(rows, KV_HEADS, HEAD_DIM, device=dev, dtype=torch.bfloat16) for _ in "kv")
    return q, k, v


def ours(length: int) -> dict[str, Any]:
    pack, on_device, kernels = engine_kernels()
    batch = pack(*layout(length))
    q, k, v = random_qkv(batch)
    gpu = on_device(batch, torch.device("cuda"))
    flops = packed_flops(batch)
    out: dict[str, Any] = {}
    reference = kernels["ours_prefix"](q, k, v, gpu, HEAD_DIM**-0.5).float()
    for name, kernel in kernels.items():
        try:
            call = functools.partial(kernel, q, k, v, gpu, HEAD_DIM**-0.5)
            ms = median_ms(call)
            diff = (call().float() - reference).abs().max().item()
            out[name] = {
                "ms": round(ms, 3),
                "tflops": round(flops / ms / 1e9, 1),
                "max_diff_to_prefix": round(diff, 4),
            }
        except Exception as exc:  # a kernel this GPU or build lacks: recorded, not fatal
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return out


def dense_plan(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For attention over a padded dense batch of the documents: ``[docs, L]`` packed rows of
    each document's keys (head, query prefix, its own rows; padded at the end with row 0,
    which causal masking hides from every real row), and where its own rows' outputs are in
    that batch (flat) and in the packed rows."""
    cu_q, cu_k = batch.cu_q.numpy(), batch.cu_k.numpy()
    n_docs = len(batch.last)
    first = len(cu_q) - 1 - n_docs
    lq, lk = (cu_q[first + 1 :] - cu_q[first:-1]), (cu_k[first + 1 :] - cu_k[first:-1])
    width = int(lk.max())
    cols = np.arange(width)[None, :]
    keys = batch.key_index.numpy()[
        np.minimum(cu_k[first:-1, None] + cols, len(batch.key_index) - 1)
    ]
    index = np.where(cols < lk[:, None], keys, 0)
    own = (cols >= (lk - lq)[:, None]) & (cols < lk[:, None])
    flat = np.flatnonzero(own)
    rows = index.ravel()[flat]
    return tuple(torch.from_numpy(a).to(device) for a in (index, flat, rows))  # type: ignore[return-value]


def cudnn_gathered(length: int) -> dict[str, Any]:
    """cuDNN's SDPA (the public API) on the engine's packed rows, all costs included: each
    document's keys and, at the same rows, its queries gathered into one padded dense batch
    (so the causal mask is the plain top-left one cuDNN applies), its own rows' outputs put
    back. Key/value heads shared by SDPA (``gqa``) or copied out per query head
    (``expanded``); and the first call at each of 3 new shapes (cuDNN builds a graph per
    shape)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    pack, on_device, kernels = engine_kernels()
    dev = torch.device("cuda")

    def inputs(length: int) -> tuple[Any, ...]:
        batch = pack(*layout(length))
        return batch, *random_qkv(batch), dense_plan(batch, dev)

    def call(q: Any, k: Any, v: Any, plan: tuple[torch.Tensor, ...], gqa: bool) -> torch.Tensor:
        index, flat, rows = plan
        qd, kd, vd = (t[index].transpose(1, 2) for t in (q, k, v))  # [docs, heads, L, D]
        if not gqa:
            kd, vd = (t.repeat_interleave(HEADS // KV_HEADS, dim=1) for t in (kd, vd))
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            o = F.scaled_dot_product_attention(qd, kd, vd, is_causal=True, enable_gqa=gqa)
        out = torch.empty_like(q)
        out[rows] = o.transpose(1, 2).flatten(0, 1)[flat]
        return out

    batch, q, k, v, plan = inputs(length)
    flops, doc_rows = packed_flops(batch), plan[2]
    want = kernels["ours_prefix"](q, k, v, on_device(batch, dev), HEAD_DIM**-0.5)[doc_rows]
    result: dict[str, Any] = {}
    for gqa in (True, False):
        name = "cudnn_gathered" + ("" if gqa else "_expanded")
        try:
            got = call(q, k, v, plan, gqa)[doc_rows]
            ms = median_ms(functools.partial(call, q, k, v, plan, gqa))
            result[name] = {"ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1)}
            result[name]["max_diff"] = round((got.float() - want.float()).abs().max().item(), 4)
        except Exception as exc:  # a backend this GPU or build lacks: recorded, not fatal
            result[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    first_calls: list[Any] = []
    for extra in (1, 2, 3):  # documents a token longer each time: shapes cuDNN has not seen
        _, q_new, k_new, v_new, plan_new = inputs(length + extra)
        torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            call(q_new, k_new, v_new, plan_new, True)
            torch.cuda.synchronize()
            first_calls.append(round((time.perf_counter() - start) * 1000, 1))
        except Exception as exc:
            first_calls.append(f"{type(exc).__name__}: {exc}"[:200])
    result["cudnn_new_shape_first_call_ms"] = first_calls
    return result


SWEEP = {  # our kernel's launch: query rows per tile, keys per step, warps, pipeline stages
    "tile_rows": (32, 64),
    "key_block": (64, 128),
    "num_warps": (4, 8),
    "num_stages": (2, 3, 4),
}


def sweep(length: int, grid: dict[str, tuple[int, ...]]) -> list[dict[str, Any]]:
    """Our kernel at every launch configuration of ``grid`` (:data:`SWEEP`'s keys; the engine
    fixes one): ms, TFLOP/s and the largest difference from the engine's own configuration's
    output."""
    import dataclasses
    import itertools

    from qwen3_rerank.engines.torch.attention import BACKENDS
    from qwen3_rerank.engines.torch.kernels.tiles import LAUNCH
    from qwen3_rerank.engines.torch.layout import pack
    from qwen3_rerank.engines.torch.transfer import on_device

    dev, args = torch.device("cuda"), layout(length)
    default = pack(*args)
    q, k, v = random_qkv(default)
    flops, kernel = packed_flops(default), BACKENDS["prefix"]
    want = kernel(q, k, v, on_device(default, dev), HEAD_DIM**-0.5).float()
    engine_launch, out = dict(LAUNCH), []
    try:
        for tile_rows, key_block, warps, stages in itertools.product(*grid.values()):
            config: dict[str, Any] = {"tile_rows": tile_rows, "key_block": key_block}
            config |= {"num_warps": warps, "num_stages": stages}
            LAUNCH.update(warps=warps, long_warps=warps, num_stages=stages)
            batch = on_device(
                dataclasses.replace(pack(*args, tile_rows), key_block=key_block),
                dev,
            )
            try:
                got = kernel(q, k, v, batch, HEAD_DIM**-0.5)
                ms = median_ms(functools.partial(kernel, q, k, v, batch, HEAD_DIM**-0.5))
                diff = (got.float() - want).abs().max().item()
                config |= {"ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1)}
                config["max_diff"] = round(diff, 4)
            except Exception as exc:  # e.g. more shared memory than the GPU has: recorded
                config["error"] = f"{type(exc).__name__}: {exc}"[:200]
            out.append(config)
    finally:
        LAUNCH.clear()
        LAUNCH.update(engine_launch)
    return out


def others(length: int) -> dict[str, Any]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    docs, seq = ROWS // length, length + HEAD_TOKENS + QUERY_TOKENS
    dev, dt = torch.device("cuda"), torch.bfloat16
    q = torch.randn(docs, HEADS, seq, HEAD_DIM, device=dev, dtype=dt)
    k, v = (torch.randn(docs, KV_HEADS, seq, HEAD_DIM, device=dev, dtype=dt) for _ in "kv")
    k_all, v_all = (t.repeat_interleave(HEADS // KV_HEADS, dim=1) for t in (k, v))
    flops = causal_flops(docs, seq)
    calls: dict[str, Callable[[], Any]] = {}

    def sdpa(backend: Any, gqa: bool) -> Callable[[], Any]:
        def call() -> Any:
            with sdpa_kernel(backend):
                if gqa:
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                return F.scaled_dot_product_attention(q, k_all, v_all, is_causal=True)

        return call

    calls["sdpa_cudnn"] = sdpa(SDPBackend.CUDNN_ATTENTION, gqa=False)
    calls["sdpa_flash"] = sdpa(SDPBackend.FLASH_ATTENTION, gqa=True)
    mask = create_block_mask(lambda b, h, qi, ki: ki <= qi, None, None, seq, seq, device=dev)
    flex = torch.compile(flex_attention, dynamic=False)
    calls["flex"] = lambda: flex(q, k, v, block_mask=mask, enable_gqa=True)
    qs, ks, vs = (t.transpose(1, 2).contiguous() for t in (q, k, v))  # (batch, seq, heads, dim)
    try:
        import flash_attn_interface  # FlashAttention-3 (Hopper)

        calls["flash_attn3"] = lambda: flash_attn_interface.flash_attn_func(qs, ks, vs, causal=True)
    except ImportError:
        pass
    try:
        from flash_attn import flash_attn_func

        calls["flash_attn2"] = lambda: flash_attn_func(qs, ks, vs, causal=True)
    except ImportError:
        pass
    try:  # vLLM's own build of FlashAttention 2 and 3, on the flat varlen layout vLLM uses
        from vllm.vllm_flash_attn import flash_attn_varlen_func

        flat = [t.reshape(docs * seq, *t.shape[2:]) for t in (qs, ks, vs)]
        cu = torch.arange(0, (docs + 1) * seq, seq, dtype=torch.int32, device=dev)
        for version in (3, 2):
            calls[f"vllm_fa{version}"] = functools.partial(
                flash_attn_varlen_func,
                *flat,
                seq,
                cu,
                seq,
                cu_seqlens_k=cu,
                causal=True,
                fa_version=version,
            )
    except ImportError:
        pass
    out: dict[str, Any] = {}
    for name, call in calls.items():
        try:
            ms = median_ms(call)
            out[name] = {"ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1)}
        except Exception as exc:  # a backend this GPU or build lacks: recorded, not fatal
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return out


def end_to_end(model: str, lengths: list[int]) -> dict[str, Any]:
    """pairs/s of the engine on 1 query x the documents of each length, per public
    ``attention`` option (one engine per option, each timed on every length)."""
    from transformers import AutoTokenizer

    from qwen3_rerank import ConfigurationError, Reranker
    from qwen3_rerank.workloads import single_token_words

    words = single_token_words(AutoTokenizer.from_pretrained(model))

    def documents(length: int, salt: int) -> list[str]:
        return [
            " ".join(words[(i * 7 + j * 13 + salt) % len(words)] for j in range(length))
            for i in range(ROWS // length)
        ]

    out: dict[str, Any] = {}
    for backend in ("auto", "prefix", "fa3", "flash"):
        options: dict[str, Any] = {} if backend == "auto" else {"attention": backend}
        try:
            with Reranker(model, device="cuda", **options) as rr:
                speeds = {}
                for length in lengths:
                    for salt in range(2):
                        rr.score("warm up", documents(length, salt))
                    best = float("inf")
                    for salt in range(2, 5):  # fresh documents each call
                        docs = documents(length, salt)
                        start = time.perf_counter()
                        rr.score(f"query {salt}", docs)
                        best = min(best, time.perf_counter() - start)
                    speeds[str(length)] = round(len(docs) / best, 2)
                out[backend] = speeds
        except (ConfigurationError, TypeError) as exc:  # no such option at this commit
            out[backend] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", help="also time the engine end to end per attention option")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument(
        "--sweep", action="store_true", help="also time our kernel at every launch in SWEEP"
    )
    parser.add_argument(
        "--grid",
        nargs="*",
        default=[],
        metavar="KEY=V1,V2",
        help="with --sweep, these values instead of SWEEP's (e.g. tile_rows=64 num_stages=3,4)",
    )
    parser.add_argument(
        "--ours-only", action="store_true", help="time the engine's kernels, no other library"
    )
    args = parser.parse_args()
    grid = dict(SWEEP)
    for item in args.grid:
        key, values = item.split("=")
        if key not in grid:
            parser.error(f"--grid: {key!r} is not one of {', '.join(SWEEP)}")
        grid[key] = tuple(int(x) for x in values.split(","))
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    lines = [
        f"# Attention alone, {result['device']}, torch {result['torch']}",
        "",
        f"{ROWS} rows per batch, 0.6B heads, bf16, causal; TFLOP/s of useful work.",
        "",
        "| length | backend | ms | TFLOP/s |",
        "|---|---|---|---|",
    ]
    lengths = [int(x) for x in args.lengths.split(",")]
    for length in lengths:
        got = ours(length)
        if not args.ours_only:
            got |= cudnn_gathered(length) | others(length)
        result[str(length)] = got
        timed = {k: v for k, v in got.items() if "tflops" in v}
        winner = max(timed, key=lambda k: timed[k]["tflops"]) if timed else None
        got["winner"] = winner
        for name, figures in got.items():
            if isinstance(figures, dict) and "tflops" in figures:
                lines.append(f"| {length} | {name} | {figures['ms']} | {figures['tflops']} |")
            elif isinstance(figures, list):
                lines.append(f"| {length} | {name} | {figures} | - |")
            elif isinstance(figures, dict):
                lines.append(f"| {length} | {name} | {figures.get('error', '')[:80]} | - |")
        print(f"{length} tokens: fastest {winner}", {k: v.get("tflops") for k, v in timed.items()})
    if args.sweep:
        from qwen3_rerank.engines.torch.kernels.tiles import LAUNCH, LONG_KEY_BLOCK, LONG_TILE

        engine_launch = f"{LONG_TILE // (HEADS // KV_HEADS)} rows, {LONG_KEY_BLOCK} keys, "
        engine_launch += f"{LAUNCH['long_warps']} warps, {LAUNCH['num_stages']} stages"
        lines += ["", f"Our kernel per launch (the engine's at these lengths: {engine_launch}):"]
        lines += ["", "| length | rows | keys | warps | stages | ms | TFLOP/s | max diff |"]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for length in lengths:
            result[f"sweep_{length}"] = configs = sweep(length, grid)
            for c in configs:
                launch = f"| {length} | {c['tile_rows']} | {c['key_block']} | {c['num_warps']} "
                launch += f"| {c['num_stages']} "
                if "error" in c:
                    lines.append(launch + f"| {c['error'][:60]} | - | - |")
                else:
                    lines.append(launch + f"| {c['ms']} | {c['tflops']} | {c['max_diff']} |")
            correct = [c for c in configs if "tflops" in c and c["max_diff"] < 2e-2]
            best = max(correct, key=lambda c: c["tflops"]) if correct else None
            print(f"{length} tokens: fastest launch of ours", best, flush=True)
    if args.model:
        engine = result["engine_end_to_end"] = end_to_end(args.model, lengths)
        lines += ["", "Engine end to end, 1 query x 16k tokens of documents, pairs/s:", ""]
        lines += ["| attention | " + " | ".join(map(str, lengths)) + " |"]
        lines += ["|---|" + "---|" * len(lengths)]
        for backend, speeds in engine.items():
            cells = [str(speeds.get(str(n), speeds.get("error", "-"))) for n in lengths]
            lines.append(f"| {backend} | " + " | ".join(cells) + " |")
        print("engine end to end (pairs/s):", engine, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "attention.json").write_text(json.dumps(result, indent=1))
    (out / "attention.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
