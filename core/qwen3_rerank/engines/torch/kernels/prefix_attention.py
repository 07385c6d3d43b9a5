"""Attention over packed rows that reads each document's shared prefix in place (Triton).

PyTorch's varlen FlashAttention-2 wants each sequence's keys contiguous, so every layer
gathered the template head and query prefix in front of each document's own keys, and its
128-row query tiles are ~40% idle on 268-token documents. This kernel works on the packed
rows as they are: a tile of ``BLOCK_M`` query rows of one sequence, times the two query
heads that share one key/value head (grouped-query attention: keys and values are loaded
once for both), reads up to two context ranges (head, query prefix) whole and its own
sequence causally. Scores match ``attention_loop`` up to float noise (tests compare them).

The tile table is built on the host with the batch (:mod:`.tiles`).
"""

from __future__ import annotations

import math

import torch

from .scaffold import register, tl, triton
from .tiles import BLOCK_M, KEY_BLOCK, LAUNCH, LONG_KEY_BLOCK, num_warps

__all__ = ["prefix_attention"]


if triton is not None:

    @triton.jit
    def _attend(
        acc,
        m_i,
        l_i,
        q,
        K,
        V,
        ctx0_start,
        ctx0_end,
        ctx1_start,
        ctx1_end,
        own,
        own_end,
        key_row,
        stride_kt,
        stride_vt,
        scale_log2,
        HEAD_DIM: tl.constexpr,
        BLOCK_N: tl.constexpr,
        MASK: tl.constexpr,
    ):
        """Online softmax over the key blocks of both context ranges, then of the tile's own
        keys ``[own, own_end)``, all in one loop, so that loads are pipelined across the
        ranges. ``MASK`` says what each block hides: ``"causal"``, keys past a range's end and
        keys after a row's own key row (``key_row``; context keys lie before ``own``, so this
        only hides own keys); ``"ends"``, keys past a range's end only, at the cost of a
        per-key bias added with the scale (one FMA) rather than a 2-D mask; ``"none"``,
        nothing, for whole blocks every row sees, loaded without masks.
        ``K`` and ``V`` point at the key/value head."""
        n = tl.arange(0, BLOCK_N)
        d = tl.arange(0, HEAD_DIM)
        n0 = tl.cdiv(ctx0_end - ctx0_start, BLOCK_N)
        n01 = n0 + tl.cdiv(ctx1_end - ctx1_start, BLOCK_N)
        for b in range(0, n01 + tl.cdiv(own_end - own, BLOCK_N)):
            in0 = b < n0
            in1 = b < n01
            start = tl.where(
                in0,
                ctx0_start + b * BLOCK_N,
                tl.where(in1, ctx1_start + (b - n0) * BLOCK_N, own + (b - n01) * BLOCK_N),
            )
            keys = start + n
            inside = keys < tl.where(in0, ctx0_end, tl.where(in1, ctx1_end, own_end))
            if MASK == "none":
                k = tl.load(K + keys[:, None] * stride_kt + d[None, :])
                s = tl.dot(q, tl.trans(k)) * scale_log2
            else:
                k = tl.load(
                    K + keys[:, None] * stride_kt + d[None, :], mask=inside[:, None], other=0.0
                )
                if MASK == "causal":
                    seen = inside[None, :] & (keys[None, :] <= key_row[:, None])
                    s = tl.where(seen, tl.dot(q, tl.trans(k)) * scale_log2, float("-inf"))
                else:
                    bias = tl.where(inside, 0.0, float("-inf"))
                    s = tl.dot(q, tl.trans(k)) * scale_log2 + bias[None, :]
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.math.exp2(s - m_safe[:, None])
            alpha = tl.math.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            if MASK == "none":
                v = tl.load(V + keys[:, None] * stride_vt + d[None, :])
            else:
                v = tl.load(
                    V + keys[:, None] * stride_vt + d[None, :], mask=inside[:, None], other=0.0
                )
            acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
            m_i = m_new
        return acc, m_i, l_i

    @triton.jit
    def _normed_rotated(
        Q,
        QW,
        Cos,
        Sin,
        row,
        head,
        pos_row,
        live,
        stride_qt,
        stride_qh,
        stride_ct,
        eps,
        HEAD_DIM: tl.constexpr,
    ):
        """Query rows as the model's q-norm (RMSNorm in fp32, rounded, scaled) and RoPE
        (rotate-half, cos/sin of packed row ``pos_row``) leave them, rounded once at the end
        as inductor's fused kernel does."""
        half = tl.arange(0, HEAD_DIM // 2)
        at = Q + row[:, None] * stride_qt + head[:, None] * stride_qh + half[None, :]
        x1 = tl.load(at, mask=live[:, None], other=0.0).to(tl.float32)
        x2 = tl.load(at + HEAD_DIM // 2, mask=live[:, None], other=0.0).to(tl.float32)
        r = tl.rsqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1)) / HEAD_DIM + eps)
        dtype = Q.dtype.element_ty
        n1 = (x1 * r[:, None]).to(dtype).to(tl.float32) * tl.load(QW + half).to(tl.float32)
        n2 = (x2 * r[:, None]).to(dtype).to(tl.float32) * tl.load(QW + HEAD_DIM // 2 + half).to(
            tl.float32
        )
        trig = pos_row[:, None] * stride_ct + half[None, :]
        c = tl.load(Cos + trig, mask=live[:, None], other=0.0).to(tl.float32)
        s = tl.load(Sin + trig, mask=live[:, None], other=0.0).to(tl.float32)
        q1 = (n1 * c - n2 * s).to(dtype)
        q2 = (n2 * c + n1 * s).to(dtype)
        return tl.reshape(tl.permute(tl.join(q1, q2), (0, 2, 1)), (row.shape[0], HEAD_DIM))

    @triton.jit
    def _prefix_attention_kernel(
        Q,
        K,
        V,
        Out,
        Tiles,
        QW,
        Cos,
        Sin,
        stride_qt,
        stride_qh,
        stride_kt,
        stride_kh,
        stride_vt,
        stride_vh,
        stride_ot,
        stride_oh,
        stride_ct,
        eps,
        scale_log2,
        GROUP: tl.constexpr,
        HEAD_DIM: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        ROPE_Q: tl.constexpr,
        MASK_EVERY_BLOCK: tl.constexpr,
    ):
        tile = Tiles + tl.program_id(0) * 8
        kv_head = tl.program_id(1)
        q_start = tl.load(tile)
        q_end = tl.minimum(tl.load(tile + 1), q_start + BLOCK_M)
        diag = tl.load(tile + 2)
        own = tl.load(tile + 3)
        # both query heads of this key/value head, row by row: [BLOCK_M * GROUP, HEAD_DIM]
        m = tl.arange(0, BLOCK_M * GROUP)
        row = q_start + m // GROUP
        head = kv_head * GROUP + m % GROUP
        d = tl.arange(0, HEAD_DIM)
        live = row < q_end
        key_row = diag + m // GROUP  # the packed row of each query
        if ROPE_Q:
            q = _normed_rotated(
                Q,
                QW,
                Cos,
                Sin,
                row,
                head,
                key_row,
                live,
                stride_qt,
                stride_qh,
                stride_ct,
                eps,
                HEAD_DIM,
            )
        else:
            q = tl.load(
                Q + row[:, None] * stride_qt + head[:, None] * stride_qh + d[None, :],
                mask=live[:, None],
                other=0.0,
            )
        m_i = tl.full([BLOCK_M * GROUP], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M * GROUP], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M * GROUP, HEAD_DIM], dtype=tl.float32)
        ctx0_start, ctx0_end = tl.load(tile + 4), tl.load(tile + 5)
        ctx1_start, ctx1_end = tl.load(tile + 6), tl.load(tile + 7)
        edge_end = diag + (q_end - q_start)
        K_head = K + kv_head * stride_kh
        V_head = V + kv_head * stride_vh
        # Short documents: a tile's few key blocks all in one causal loop. Long ones: the
        # context ranges, then the blocks of its own keys every row of the tile sees, whole
        # and without masks, then the causal edge.
        if MASK_EVERY_BLOCK:
            acc, m_i, l_i = _attend(
                acc,
                m_i,
                l_i,
                q,
                K_head,
                V_head,
                ctx0_start,
                ctx0_end,
                ctx1_start,
                ctx1_end,
                own,
                edge_end,
                key_row,
                stride_kt,
                stride_vt,
                scale_log2,
                HEAD_DIM,
                BLOCK_N,
                "causal",
            )
        else:
            whole_end = own + (diag + 1 - own) // BLOCK_N * BLOCK_N
            acc, m_i, l_i = _attend(
                acc,
                m_i,
                l_i,
                q,
                K_head,
                V_head,
                ctx0_start,
                ctx0_end,
                ctx1_start,
                ctx1_end,
                own,
                own,
                key_row,
                stride_kt,
                stride_vt,
                scale_log2,
                HEAD_DIM,
                BLOCK_N,
                "ends",
            )
            acc, m_i, l_i = _attend(
                acc,
                m_i,
                l_i,
                q,
                K_head,
                V_head,
                0,
                0,
                0,
                0,
                own,
                whole_end,
                key_row,
                stride_kt,
                stride_vt,
                scale_log2,
                HEAD_DIM,
                BLOCK_N,
                "none",
            )
            acc, m_i, l_i = _attend(
                acc,
                m_i,
                l_i,
                q,
                K_head,
                V_head,
                0,
                0,
                0,
                0,
                whole_end,
                edge_end,
                key_row,
                stride_kt,
                stride_vt,
                scale_log2,
                HEAD_DIM,
                BLOCK_N,
                "causal",
            )
        out = acc / l_i[:, None]
        tl.store(
            Out + row[:, None] * stride_ot + head[:, None] * stride_oh + d[None, :],
            out.to(Out.dtype.element_ty),
            mask=live[:, None],
        )


def prefix_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    tiles: torch.Tensor,
    scale: float,
    *,
    block_m: int = BLOCK_M,
    block_n: int = KEY_BLOCK,
    rope_q: tuple[torch.Tensor, torch.Tensor, torch.Tensor, float] | None = None,
) -> torch.Tensor:
    """``q [R, H, D]`` against packed ``k, v [T, KV, D]`` as ``tiles`` (of ``block_m`` rows)
    say, stepping ``block_n`` keys at a time; ``[R, H, D]``.

    With ``rope_q = (q_norm_weight, cos, sin, eps)``, ``q`` is the raw projection and the
    kernel applies the q-norm and RoPE itself as it loads each tile (``cos``/``sin``: ``[T, D]``
    by packed row, the row being the tile table's ``diag`` for the last layer's gathered
    rows): one pass over ``q`` instead of three (docs/how-it-works.md)."""
    if rope_q is None:
        out: torch.Tensor = torch.ops.qwen3_rerank.prefix_attention(
            q, k, v, tiles, scale, block_m, block_n, None, None, None, 0.0
        )
    else:
        weight, cos, sin, eps = rope_q
        out = torch.ops.qwen3_rerank.prefix_attention(
            q, k, v, tiles, scale, block_m, block_n, weight, cos, sin, eps
        )
    return out


def _launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    tiles: torch.Tensor,
    scale: float,
    block_m: int,
    block_n: int,
    q_weight: torch.Tensor | None,
    cos: torch.Tensor | None,
    sin: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    out = q.new_empty(q.shape)
    group = q.shape[1] // k.shape[1]
    grid = (tiles.shape[0], k.shape[1])
    rope = q_weight is not None and cos is not None and sin is not None
    _prefix_attention_kernel[grid](
        q,
        k,
        v,
        out,
        tiles,
        q_weight if rope else q,
        cos if rope else q,
        sin if rope else q,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        out.stride(0),
        out.stride(1),
        cos.stride(0) if cos is not None else 0,
        eps,
        scale * math.log2(math.e),
        GROUP=group,
        HEAD_DIM=q.shape[2],
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        ROPE_Q=rope,
        MASK_EVERY_BLOCK=block_n < LONG_KEY_BLOCK,
        num_warps=num_warps(block_m * group, block_n),
        num_stages=LAUNCH["num_stages"],
    )
    return out


def _fake(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    tiles: torch.Tensor,
    scale: float,
    block_m: int,
    block_n: int,
    q_weight: torch.Tensor | None,
    cos: torch.Tensor | None,
    sin: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    return q.new_empty(q.shape)


register("prefix_attention", _launch, _fake)
