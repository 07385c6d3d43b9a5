"""Attention alone for one rag100x256 query's packed layout: PyTorch's FlashAttention-2
varlen kernel (with the key/value gathers it needs) against the memory-efficient varlen kernel
(keys and values expanded to every query head) and FlexAttention on the packed rows with a
block mask (no gathers: the mask lets each document see its query's prefix rows).

    python benchmarks/attention_probe.py --out OUT   # CUDA only

Shapes are Qwen3-Reranker-0.6B's (16 query heads, 8 key/value heads, head size 128); the
layout is the engine's: a 39-token template head, a 31-token query part, then 25 documents
of 268 tokens per batch, four batches per query, 28 layers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from qwen3_rerank.engines.packed import attention_flash, attention_prefix, pack

HEADS, KV_HEADS, HEAD_DIM, LAYERS, BATCHES = 16, 8, 128, 28, 4
HEAD, QUERY, DOCS, DOC_LEN = 39, 31, 25, 268


def best_ms(fn: Any, reps: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def random_qkv(
    rows: int, seed: int, dev: torch.device, dt: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values of ``rows`` packed rows, Qwen3-Reranker-0.6B's head shapes."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    shapes = ((rows, HEADS, HEAD_DIM), (rows, KV_HEADS, HEAD_DIM), (rows, KV_HEADS, HEAD_DIM))
    q, k, v = (torch.randn(shape, generator=gen).to(dev, dt) for shape in shapes)
    return q, k, v


def useful_flops(batch: Any) -> float:
    """Multiply-adds of QK^T and PV over the visible (query, key) pairs, times two."""
    lq = (batch.cu_q[1:] - batch.cu_q[:-1]).double()
    lk = (batch.cu_k[1:] - batch.cu_k[:-1]).double()
    pairs = (lq * (lk - lq) + lq * (lq + 1) / 2).sum().item()
    return 4 * pairs * HEAD_DIM * HEADS


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--prefix-only", action="store_true", help="only the prefix kernel's sweep vs FA2"
    )
    parser.add_argument(
        "--lengths",
        default="",
        help="more document lengths for the sweep, comma-separated (a 9216-row batch each)",
    )
    parser.add_argument(
        "--ab",
        default="",
        help="instead of the sweep, these launch settings in turn, rounds interleaved, with "
        "the q-norm and RoPE applied in the kernel as in the engine: "
        "'rows/keys/warps/stages,...' (e.g. 32/32/4/3,64/32/4/3)",
    )
    args = parser.parse_args()
    layouts = {"rag_batch": (25, DOC_LEN), "long_batch": (2, 4062)}
    for n in (int(x) for x in args.lengths.split(",") if x):
        layouts[f"docs_of_{n}"] = (max(1, 9216 // n), n)
    if args.ab:
        settings = [tuple(int(x) for x in c.split("/")) for c in args.ab.split(",")]
        return write({"ab": ab(layouts, settings)}, args.out)
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    dev, dt = torch.device("cuda"), torch.bfloat16
    batch = pack([[2] * QUERY], [(0, [3] * DOC_LEN) for _ in range(DOCS)], [1] * HEAD)
    rows = int(batch.cu_q[-1])
    q, k, v = random_qkv(rows, 0, dev, dt)
    gpu = batch.to(dev)
    scale = HEAD_DIM**-0.5

    def flash() -> torch.Tensor:
        return attention_flash(q, k, v, gpu, scale)

    # Row facts for the mask: which sequence owns a row, which query a prefix row serves,
    # which query a document row belongs to (-1 / -2 where it does not apply).
    lengths = (batch.cu_q[1:] - batch.cu_q[:-1]).long()
    owner = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    is_head = owner == 0
    prefix_of = torch.where(owner == 1, 0, -1)
    doc_of = torch.where(owner >= 2, 0, -2)
    owner, is_head, prefix_of, doc_of = (t.to(dev) for t in (owner, is_head, prefix_of, doc_of))

    def visible(b: Any, h: Any, qi: Any, ki: Any) -> Any:
        seen = is_head[ki] | (owner[ki] == owner[qi]) | (prefix_of[ki] == doc_of[qi])
        return seen & (ki <= qi)

    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "rows_per_batch": rows,
        "useful_tflop_per_query": round(useful_flops(batch) * LAYERS * BATCHES / 1e12, 3),
    }
    want = flash().float()
    if args.prefix_only:
        result["sweep"] = sweep(dev, dt, scale, layouts)
        return write(result, args.out)
    ms = best_ms(flash)
    result["flash_varlen_with_gathers_ms_per_query"] = round(ms * LAYERS * BATCHES, 2)

    # The memory-efficient (CUTLASS) varlen kernel: 64-row query tiles, but no grouped-query
    # heads, so keys and values are expanded to all query heads first.
    group = HEADS // KV_HEADS
    expanded = [t[gpu.key_index].repeat_interleave(group, dim=1) for t in (k, v)]

    def efficient(expand: bool) -> torch.Tensor:
        ks, vs = (
            [t[gpu.key_index].repeat_interleave(group, dim=1) for t in (k, v)]
            if expand
            else expanded
        )
        out = torch.ops.aten._efficient_attention_forward(
            q[None],
            ks[None],
            vs[None],
            None,
            gpu.cu_q,
            gpu.cu_k,
            gpu.max_q,
            gpu.max_k,
            0.0,
            2,
            False,
            scale=scale,
        )
        return out[0][0]

    try:
        got = efficient(True).float()
        result["efficient_varlen_with_gathers_ms_per_query"] = round(
            best_ms(lambda: efficient(True)) * LAYERS * BATCHES, 2
        )
        result["efficient_varlen_kernel_only_ms_per_query"] = round(
            best_ms(lambda: efficient(False)) * LAYERS * BATCHES, 2
        )
        result["efficient_max_abs_diff_vs_flash"] = round((got - want).abs().max().item(), 5)
    except Exception as exc:
        result["efficient_error"] = f"{type(exc).__name__}: {exc}"[:300]
    gathered = k[gpu.key_index], v[gpu.key_index]

    def flash_kernel() -> torch.Tensor:
        out = torch.ops.aten._flash_attention_forward(
            q, *gathered, gpu.cu_q, gpu.cu_k, gpu.max_q, gpu.max_k, 0.0, True, False, scale=scale
        )
        return out[0]

    result["flash_kernel_only_ms_per_query"] = round(best_ms(flash_kernel) * LAYERS * BATCHES, 2)

    # The Triton kernel of prefix_attention.py on the packed rows as they are (no gathers).
    got = attention_prefix(q, k, v, gpu, scale).float()
    result["prefix_kernel_ms_per_query"] = round(
        best_ms(lambda: attention_prefix(q, k, v, gpu, scale)) * LAYERS * BATCHES, 2
    )
    result["prefix_kernel_max_abs_diff_vs_flash"] = round((got - want).abs().max().item(), 5)
    final = gpu.final()
    result["prefix_kernel_last_layer_ms_per_query"] = round(
        best_ms(lambda: attention_prefix(q[gpu.last], k, v, final, scale)) * BATCHES, 3
    )

    compiled = torch.compile(flex_attention, dynamic=False)
    qh, kh, vh = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    for block in (128, 64):
        mask_ms = best_ms(
            lambda block=block: create_block_mask(
                visible, None, None, rows, rows, device=dev, BLOCK_SIZE=block
            )
        )
        mask = create_block_mask(visible, None, None, rows, rows, device=dev, BLOCK_SIZE=block)
        options = {"BLOCK_M": block, "BLOCK_N": min(block, 64)}

        def flex(mask: Any = mask, options: dict[str, int] = options) -> torch.Tensor:
            out = compiled(
                qh, kh, vh, block_mask=mask, scale=scale, enable_gqa=True, kernel_options=options
            )
            return out[0].transpose(0, 1)

        try:
            got = flex().float()
            ms = best_ms(flex)
        except Exception as exc:
            result[f"flex_block{block}_error"] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        result[f"flex_block{block}_ms_per_query"] = round(ms * LAYERS * BATCHES, 2)
        result[f"flex_block{block}_mask_ms_per_batch"] = round(mask_ms, 3)
        result[f"flex_block{block}_max_abs_diff_vs_flash"] = round(
            (got - want).abs().max().item(), 5
        )
    result["sweep"] = sweep(dev, dt, scale, layouts)
    return write(result, args.out)


def write(result: dict[str, Any], out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "attention_probe.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


def ab(layouts: dict[str, tuple[int, int]], settings: list[tuple[int, ...]]) -> dict[str, Any]:
    """Per layout, the median over 7 interleaved rounds of each launch setting's time for one
    batch's 28 layers (CUDA events; the kernel applying the q-norm and RoPE as in the engine):
    one setting against another on the same GPU at the same moment, as the sweep is not."""
    from qwen3_rerank.engines import prefix_attention

    dev, dt = torch.device("cuda"), torch.bfloat16
    default = dict(prefix_attention.LAUNCH)
    found: dict[str, Any] = {}
    for name, (n_docs, doc_len) in layouts.items():
        docs = [(0, [3] * doc_len) for _ in range(n_docs)]
        q, k, v = random_qkv(HEAD + QUERY + n_docs * doc_len, 1, dev, dt)
        weight = torch.ones(HEAD_DIM, device=dev, dtype=dt)
        cos = torch.ones(len(q), HEAD_DIM, device=dev, dtype=dt)
        sin = torch.zeros(len(q), HEAD_DIM, device=dev, dtype=dt)
        times: dict[str, list[float]] = {}
        for _ in range(7):
            for rows, keys, warps, stages in settings:
                tiles = pack([[2] * QUERY], docs, [1] * HEAD, tile_rows=rows).tiles.to(dev)
                prefix_attention.LAUNCH.update({"num_warps": warps, "num_stages": stages})
                rope = (weight, cos, sin, 1e-6)
                run = partial(prefix_attention.prefix_attention, q, k, v, tiles)
                call = partial(run, HEAD_DIM**-0.5, rows, keys, rope)
                call()
                start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                start.record()
                for _ in range(LAYERS):
                    call()
                end.record()
                end.synchronize()
                times.setdefault(f"{rows}/{keys}/{warps}/{stages}", []).append(
                    start.elapsed_time(end)
                )
        prefix_attention.LAUNCH.update(default)
        found[name] = {key: round(statistics.median(ms), 3) for key, ms in times.items()}
        print(name, found[name], flush=True)
    return found


def sweep(
    dev: torch.device, dt: torch.dtype, scale: float, layouts: dict[str, tuple[int, int]]
) -> dict[str, Any]:
    """The prefix kernel's tile rows and launch settings against FA2 with its gathers, on one
    batch (28 layers) of each layout: ``(documents, tokens each)``, e.g. rag100x256's (25
    documents of 268 tokens) and long16x4000's (2 documents of 4062 tokens)."""
    from qwen3_rerank.engines import prefix_attention

    found: dict[str, Any] = {}
    default = dict(prefix_attention.LAUNCH)
    for name, (n_docs, doc_len) in layouts.items():
        docs = [(0, [3] * doc_len) for _ in range(n_docs)]
        q, k, v = random_qkv(HEAD + QUERY + n_docs * doc_len, 1, dev, dt)
        gpu = pack([[2] * QUERY], docs, [1] * HEAD).to(dev)
        want = attention_flash(q, k, v, gpu, scale)
        flash = partial(attention_flash, q, k, v, gpu, scale)
        entry: dict[str, Any] = {
            "flash_with_gathers_ms": round(best_ms(flash) * LAYERS, 3),
            "engine_key_block": gpu.key_block,  # the engine's choice for this batch
        }
        configs = []
        for tile_rows in (32, 64):
            tiled = pack([[2] * QUERY], docs, [1] * HEAD, tile_rows=tile_rows).to(dev)
            for block_n in (32, 64, 128):
                for warps in (4, 8):
                    for stages in (1, 2, 3, 4):
                        launch = {"num_warps": warps, "num_stages": stages}
                        prefix_attention.LAUNCH.update(launch)
                        keyed = dataclasses.replace(tiled, key_block=block_n)
                        launch = {"BLOCK_N": block_n, **launch}
                        try:
                            got = attention_prefix(q, k, v, keyed, scale)
                            ms = best_ms(partial(attention_prefix, q, k, v, keyed, scale))
                        except Exception as exc:  # resources: a config may not fit
                            configs.append(
                                {"tile_rows": tile_rows, **launch, "error": str(exc)[:120]}
                            )
                            continue
                        diff = (got.float() - want.float()).abs().max().item()
                        configs.append(
                            {
                                "tile_rows": tile_rows,
                                **launch,
                                "ms": round(ms * LAYERS, 3),
                                "max_abs_diff_vs_flash": round(diff, 5),
                            }
                        )
        prefix_attention.LAUNCH.update(default)
        entry["prefix"] = sorted(configs, key=lambda c: c.get("ms", float("inf")))
        found[name] = entry
    return found


if __name__ == "__main__":
    raise SystemExit(main())
