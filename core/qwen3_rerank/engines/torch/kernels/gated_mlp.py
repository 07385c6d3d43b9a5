"""The MLP's gate and up projections and its SiLU gate in one Triton kernel (CUDA, 16-bit).

Unfused, the gate/up matmul writes ``[rows, 2 * inter]`` and a separate kernel reads it back to
write ``silu(gate) * up``, all of it memory traffic. Here each tile multiplies the same input
rows by the gate and the up weights side by side, and applies the gate to the two fp32 products
before anything is written: ``gate`` and ``up`` are rounded to the model dtype first, as they
would be in memory, then ``silu(gate) * up`` is computed in fp32 and rounded once, as inductor's
fused kernel does. Measurements: docs/how-it-works.md.
"""

from __future__ import annotations

import functools

import torch

from .scaffold import register, tl, triton

__all__ = ["CONFIG", "fits", "gated_mlp", "launch"]

# Tile rows, columns (of each half), reduction step, grouped row blocks, warps, stages.
CONFIG = {
    "BLOCK_M": 128,
    "BLOCK_N": 128,
    "BLOCK_K": 32,
    "GROUP_M": 8,
    "num_warps": 8,
    "num_stages": 4,
}

if triton is not None:

    @triton.jit
    def tile_origin(
        tile,
        rows,
        INTER: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        GROUP_M: tl.constexpr,
    ):
        """First row and column of ``tile``. Tiles go in groups of GROUP_M row blocks, so that
        the weight columns a group reads stay in L2 while its rows go by."""
        per_group = GROUP_M * (INTER // BLOCK_N)
        first = tile // per_group * GROUP_M
        size = tl.minimum(tl.cdiv(rows, BLOCK_M) - first, GROUP_M)
        return (first + (tile % per_group) % size) * BLOCK_M, (tile % per_group) // size * BLOCK_N

    @triton.jit
    def gated(gate, up, dtype: tl.constexpr):
        """``silu(gate) * up`` from the fp32 products: each rounded to ``dtype`` first, as the
        unfused path stores them, then computed in fp32 and rounded once."""
        g = gate.to(dtype).to(tl.float32)
        return (g * tl.sigmoid(g) * up.to(dtype).to(tl.float32)).to(dtype)

    @triton.jit
    def _gated_mlp_kernel(
        X,
        W,
        Out,
        rows,
        stride_xm,
        stride_wn,
        stride_om,
        INTER: tl.constexpr,
        HIDDEN: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        GROUP_M: tl.constexpr,
    ):
        # Each program steps through tiles (one per program when there are as many programs
        # as tiles).
        tiles = tl.cdiv(rows, BLOCK_M) * (INTER // BLOCK_N)
        for tile in range(tl.program_id(0), tiles, tl.num_programs(0)):
            m0, n0 = tile_origin(tile, rows, INTER, BLOCK_M, BLOCK_N, GROUP_M)
            m = m0 + tl.arange(0, BLOCK_M)
            n = n0 + tl.arange(0, BLOCK_N)
            k = tl.arange(0, BLOCK_K)
            # rows past the end read row 0 again (no masked loads in the loop); never stored
            x_at = X + (m % rows)[:, None] * stride_xm + k[None, :]
            g_at = W + n[None, :] * stride_wn + k[:, None]  # [BLOCK_K, BLOCK_N] of W.T
            u_at = g_at + INTER * stride_wn
            gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for _ in range(0, HIDDEN, BLOCK_K):
                x = tl.load(x_at)
                gate = tl.dot(x, tl.load(g_at), gate)
                up = tl.dot(x, tl.load(u_at), up)
                x_at += BLOCK_K
                g_at += BLOCK_K
                u_at += BLOCK_K
            tl.store(
                Out + m[:, None] * stride_om + n[None, :],
                gated(gate, up, Out.dtype.element_ty),
                mask=(m < rows)[:, None],
            )


def launch(
    x: torch.Tensor, weight: torch.Tensor, config: dict[str, int], programs: int = 0
) -> torch.Tensor:
    """At most ``programs`` programs (default: one per SM on a GPU), never more than tiles."""
    rows, hidden = x.shape
    inter = weight.shape[0] // 2
    out = x.new_empty(rows, inter)
    if rows == 0:
        return out
    tiles = triton.cdiv(rows, config["BLOCK_M"]) * (inter // config["BLOCK_N"])
    if not programs and x.device.type == "cuda":
        programs = _multiprocessors(x.device)
    _gated_mlp_kernel[(min(tiles, programs or tiles),)](
        x,
        weight,
        out,
        rows,
        x.stride(0),
        weight.stride(0),
        out.stride(0),
        INTER=inter,
        HIDDEN=hidden,
        **config,
    )
    return out


@functools.cache
def _multiprocessors(device: torch.device) -> int:
    return int(torch.cuda.get_device_properties(device).multi_processor_count)


def fits(x: torch.Tensor, weight: torch.Tensor, config: dict[str, int] = CONFIG) -> bool:
    """Whether the kernel takes these shapes: contiguous rows, whole tiles of columns and of
    the reduction."""
    inter, hidden = weight.shape[0] // 2, weight.shape[1]
    return (
        x.dim() == 2
        and x.stride(1) == 1
        and weight.stride(1) == 1
        and weight.shape[0] % 2 == 0
        and inter % config["BLOCK_N"] == 0
        and hidden % config["BLOCK_K"] == 0
        and x.shape[1] == hidden
    )


def gated_mlp(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``silu(x @ gate.T) * (x @ up.T)`` for ``weight = cat(gate, up)`` (``[2 * inter, hidden]``,
    as the engine stores it): ``[rows, inter]``."""
    out: torch.Tensor = torch.ops.qwen3_rerank.gated_mlp(x, weight)
    return out


def _op(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return launch(x, weight, CONFIG)


def _fake(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0] // 2)


register("gated_mlp", _op, _fake)
