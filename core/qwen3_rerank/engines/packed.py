"""A Qwen3 forward pass built for reranking: packed, prefix-sharing, last-token-only.

Three facts of reranking shape it:

- Every document of a query shares the template prefix, the instruction and the query
  (60-90 tokens). That shared part is computed once per batch, and each document attends to
  its keys and values: documents never recompute it. The template's system part, the same
  for every query, is laid out once per batch for all queries.
- Nothing is decoded, so no KV cache is kept. The sequences of a batch (one per query prefix,
  one per document) are packed end to end with no padding, and a single variable-length
  attention call per layer serves them all: a prefix attends causally to itself; a document
  attends to its query's prefix and causally to itself (bottom-right aligned causal mask). On
  GPU our Triton kernel (``prefix_attention``) reads the prefix rows in place.
- Only the last token of each document is read: the last layer computes keys and values for
  every row but its queries, output projection and MLP for those rows alone, and the final
  norm and the two-row yes/no head run on them.

The per-token work around attention (RMSNorm, q/k head norms, RoPE, SiLU-gate, residuals) is
in two plain functions that ``torch.compile`` can fuse on GPU. The arithmetic matches
transformers' Qwen3 layer by layer (same dtypes, same order), so results equal the reference
path up to float noise.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .gated_mlp import available as gated_mlp_available
from .gated_mlp import fits as gated_mlp_fits
from .gated_mlp import gated_mlp
from .prefix_attention import (
    BLOCK_M,
    FINAL_BLOCK_M,
    KEY_BLOCK,
    final_tile_table,
    key_block,
    prefix_attention,
    tile_table,
)
from .prefix_attention import available as prefix_attention_available

__all__ = ["PackedBatch", "PackedQwen3", "pack"]

Attention = Callable[..., torch.Tensor]
# A projection weight [out, in]: plain, or FP8 (float8_e4m3fn) with one fp32 scale per output
# row, shaped [1, out] as torch._scaled_mm takes it.
Weight = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_FP8_MAX = 448.0  # the largest float8_e4m3fn value


@dataclasses.dataclass
class PackedBatch:
    """Index tensors describing one packed batch (built on the CPU, then moved)."""

    tokens: torch.Tensor  # [T] token ids: all prefixes, then all documents
    positions: torch.Tensor  # [T] rotary positions
    key_index: torch.Tensor  # [Tk] rows of the packed keys/values each sequence attends to
    cu_q: torch.Tensor  # [S+1] int32 query-side sequence offsets
    cu_k: torch.Tensor  # [S+1] int32 key-side sequence offsets
    max_q: int
    max_k: int
    last: torch.Tensor  # [n_docs] row of each document's last token
    tiles: torch.Tensor  # [n, 8] int32: prefix_attention's tiles
    final_tiles: torch.Tensor  # [n_docs, 8] the same for the last layer's rows
    tile_rows: int = BLOCK_M  # query rows per tile
    key_block: int = KEY_BLOCK  # keys per step of prefix_attention (prefix_attention.key_block)
    docs_keys_from: int = 0  # the first document's first row in key_index
    docs_max_k: int = 0  # the most keys of one document
    groups: list[AttentionGroup] | None = None  # attention_grouped's plan, made once

    def final(self) -> PackedBatch:
        """The last layer's attention: only each document's last token is read after it, so
        one query row per document, over all of that document's keys."""
        docs_from = self.cu_q.numel() - 1 - self.last.numel()  # sequences before documents
        cu_k = self.cu_k[docs_from:] - self.docs_keys_from
        cu_q = torch.arange(len(self.last) + 1, dtype=cu_k.dtype, device=cu_k.device)
        return PackedBatch(
            tokens=self.last,  # tokens and positions: not read by attention
            positions=self.last,
            key_index=self.key_index[self.docs_keys_from :],
            cu_q=cu_q,
            cu_k=cu_k,
            max_q=1,
            max_k=self.docs_max_k,
            last=cu_q[:-1],
            tiles=self.final_tiles,
            final_tiles=self.final_tiles[:0],  # no layer after it
            tile_rows=FINAL_BLOCK_M,
            key_block=self.key_block,
        )

    def attention_groups(self, device: torch.device, dtype: torch.dtype) -> list[AttentionGroup]:
        """Sequences of similar length gathered into padded groups, each with its causal
        mask aligned bottom-right (see ``AttentionGroup``)."""
        if self.groups is None:
            self.groups = _plan_groups(
                self.cu_q.cpu().numpy(), self.cu_k.cpu().numpy(), device, dtype
            )
        return self.groups

    def to(self, device: torch.device) -> PackedBatch:
        """The batch on ``device``, copied from pinned host memory (:func:`moved`)."""
        if device.type == "cpu":
            return self
        tokens, positions, key_index, cu_q, cu_k, last, tiles, final_tiles = moved(
            (
                self.tokens,
                self.positions,
                self.key_index,
                self.cu_q,
                self.cu_k,
                self.last,
                self.tiles,
                self.final_tiles,
            ),
            device,
        )
        return dataclasses.replace(
            self,
            tokens=tokens,
            positions=positions,
            key_index=key_index,
            cu_q=cu_q,
            cu_k=cu_k,
            last=last,
            tiles=tiles,
            final_tiles=final_tiles,
            groups=None,
        )


def moved(
    parts: Sequence[torch.Tensor], device: torch.device, rows: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """Host tensors on ``device``, each padded with zero rows up to ``rows`` (default: as they
    are), in one copy per dtype from pinned memory.

    Why this way: pageable copies may wait for the GPU's queued work; one small copy per
    tensor, and padding or casting them on the GPU, cost a launch each (CUDA graphs need their
    inputs padded to fixed sizes). numpy fills the pinned buffer on this thread: ``torch.cat``
    then ``pin_memory()`` copied with PyTorch's CPU thread pool once a batch passed 32768
    values, and on the H100 hosts that copy took 0.13-0.16 ms of a 9159-row batch's launch but
    at times 1.7-5.4 ms (benchmarks/results/probes/launch_probe_before_inputs.json)."""
    rows = [p.shape[0] for p in parts] if rows is None else rows
    if any(n < p.shape[0] for n, p in zip(rows, parts, strict=True)):
        raise ValueError(f"cannot pad {[p.shape[0] for p in parts]} rows down to {rows}")
    out: list[torch.Tensor] = list(parts)
    for dtype in dict.fromkeys(p.dtype for p in parts):
        chosen = [i for i, p in enumerate(parts) if p.dtype == dtype]
        shapes = [(rows[i], *parts[i].shape[1:]) for i in chosen]
        sizes = [math.prod(shape) for shape in shapes]
        host = torch.empty(sum(sizes), dtype=dtype, pin_memory=device.type == "cuda")
        filled, start = host.numpy(), 0
        for i, size in zip(chosen, sizes, strict=True):
            n = parts[i].numel()
            filled[start : start + n] = parts[i].numpy().ravel()
            filled[start + n : start + size] = 0
            start += size
        flat, start = host.to(device, non_blocking=True), 0
        for i, size, shape in zip(chosen, sizes, shapes, strict=True):
            out[i] = flat[start : start + size].view(shape)
            start += size
    return out


def pack(
    prefixes: Sequence[Sequence[int]],
    documents: Sequence[tuple[int, Sequence[int]]],
    head: Sequence[int] = (),
    tile_rows: int = BLOCK_M,
) -> PackedBatch:
    """Lays out the shared head, the prefixes and the documents end to end.

    Args:
        prefixes: Token ids of each query's shared prefix (after ``head``).
        documents: ``(prefix index, token ids)`` of each document (document part + suffix).
        head: Token ids that start every prefix (the template's system part): laid out once
            for the whole batch, and every prefix and document attends to them. A batch of
            many small requests (one document each) has ~40% fewer tokens to compute.
        tile_rows: Query rows per tile of :func:`.prefix_attention.prefix_attention`.
    """
    h = len(head)
    p_len = np.array([len(p) for p in prefixes], dtype=np.int64)
    d_len = np.array([len(d) for _, d in documents], dtype=np.int64)
    d_query = np.array([q for q, _ in documents], dtype=np.int64)
    p_start = h + np.concatenate(([0], np.cumsum(p_len)[:-1]))
    d_start = h + p_len.sum() + np.concatenate(([0], np.cumsum(d_len)[:-1]))
    tokens = np.fromiter(  # chain: no Python frame per token (half the time)
        itertools.chain(head, *prefixes, *(d for _, d in documents)),
        dtype=np.int64,
        count=int(h + p_len.sum() + d_len.sum()),
    )
    head_rows = np.arange(h)
    positions = np.concatenate(
        [head_rows]
        + [np.arange(h, h + n) for n in p_len]
        + [np.arange(h + p_len[q], h + p_len[q] + n) for q, n in zip(d_query, d_len, strict=True)]
    )
    prefix_rows = [np.arange(s, s + n) for s, n in zip(p_start, p_len, strict=True)]
    key_index = np.concatenate(
        [head_rows]
        + [np.concatenate((head_rows, rows)) for rows in prefix_rows]
        + [
            np.concatenate((head_rows, prefix_rows[q], np.arange(s, s + n)))
            for q, s, n in zip(d_query, d_start, d_len, strict=True)
        ]
    )
    q_lens = np.concatenate(([h] if h else [], p_len, d_len)).astype(np.int64)
    k_lens = np.concatenate(([h] if h else [], h + p_len, h + p_len[d_query] + d_len))
    k_lens = k_lens.astype(np.int64)
    docs_from = len(q_lens) - len(d_len)  # sequences before the documents
    # context ranges of each sequence for prefix_attention: the head, then the query prefix
    ctx = np.zeros((len(q_lens), 4), dtype=np.int64)
    ctx[docs_from - len(p_len) :, 1] = h
    ctx[docs_from:, 2] = p_start[d_query]
    ctx[docs_from:, 3] = p_start[d_query] + p_len[d_query]
    cu_q = np.concatenate(([0], np.cumsum(q_lens))).astype(np.int32)  # each sequence's start
    return PackedBatch(
        tokens=torch.from_numpy(tokens),
        positions=torch.from_numpy(positions),
        key_index=torch.from_numpy(key_index),
        cu_q=torch.from_numpy(cu_q),
        cu_k=torch.from_numpy(np.concatenate(([0], np.cumsum(k_lens))).astype(np.int32)),
        max_q=int(q_lens.max()),
        max_k=int(k_lens.max()),
        last=torch.from_numpy(d_start + d_len - 1),
        docs_keys_from=int(k_lens[:docs_from].sum()),
        docs_max_k=int(k_lens[docs_from:].max(initial=0)),
        tiles=torch.from_numpy(tile_table(cu_q[:-1], q_lens, ctx, tile_rows)),
        tile_rows=tile_rows,
        key_block=key_block(d_len),
        final_tiles=torch.from_numpy(
            final_tile_table(d_start + d_len - 1, d_start, ctx[docs_from:])
        ),
    )


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' Qwen3RMSNorm: normalise in fp32, scale in the model dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rope_tables(
    positions: torch.Tensor, inv_freq: torch.Tensor, scaling: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[T, head_dim]`` at each position, as transformers' rotary embedding makes
    them (fp32 angles, scaled, then rounded to ``dtype``).

    Made once for every position and gathered by row. Computed eagerly per batch, they cost
    ~8 launches; computed in the compiled graph, inductor recomputed cos/sin in every layer's
    k-norm + RoPE kernel: 2.0 -> 4.1 ms a query on the H100
    (benchmarks/results/probes/latency_probe_rope_in_graph.json)."""
    freqs = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat((freqs, freqs), dim=-1)
    return (angles.cos() * scaling).to(dtype), (angles.sin() * scaling).to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight [out, in] as float8_e4m3fn, scaled per output row so each row spans the
    format's range, with the scales ``[1, out]`` in fp32."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1, keepdim=True) / _FP8_MAX).clamp(min=1e-12)
    return (w / scale).to(torch.float8_e4m3fn), scale.t().contiguous()


def _matmul(x: torch.Tensor, weight: Weight) -> torch.Tensor:
    """``x @ weight.T``. For an FP8 weight, each row of ``x`` is scaled to FP8 on the fly
    (under ``torch.compile`` inductor can fuse that with the op that produced ``x``) and the
    FP8 product is rescaled to ``x``'s dtype by ``torch._scaled_mm``."""
    if isinstance(weight, torch.Tensor):
        return x @ weight.t()
    quantized, w_scale = weight
    x_scale = (x.abs().amax(dim=-1, keepdim=True).float() / _FP8_MAX).clamp(min=1e-12)
    xq = (x.float() / x_scale).to(torch.float8_e4m3fn)
    out: torch.Tensor = torch._scaled_mm(
        xq, quantized.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=x.dtype
    )
    return out


def _pre_attention(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    norm_w: torch.Tensor,
    qkv_w: Weight,
    q_norm_w: torch.Tensor,
    k_norm_w: torch.Tensor,
    heads: int,
    kv_heads: int,
    head_dim: int,
    eps: float,
    rotate_q: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input norm, fused q/k/v projection, per-head q/k norms and RoPE (q left raw when the
    attention kernel normalises and rotates it itself: ``rotate_q=False``)."""
    h = _rms_norm(x, norm_w, eps)
    qkv = _matmul(h, qkv_w)
    q_end, k_end = heads * head_dim, (heads + kv_heads) * head_dim
    q = qkv[:, :q_end].reshape(-1, heads, head_dim)
    k = _rms_norm(qkv[:, q_end:k_end].reshape(-1, kv_heads, head_dim), k_norm_w, eps)
    v = qkv[:, k_end:]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    if rotate_q:
        q = _rotate(_rms_norm(q, q_norm_w, eps), cos, sin)
    return q, _rotate(k, cos, sin), v.reshape(-1, kv_heads, head_dim)


def _silu_gate(h: torch.Tensor, gate_up_w: Weight) -> torch.Tensor:
    """``silu(h @ gate.T) * (h @ up.T)``: the MLP up to its down projection (on CUDA in
    16-bit, :func:`.gated_mlp.gated_mlp` does it in one kernel instead)."""
    gate, up = _matmul(h, gate_up_w).chunk(2, dim=-1)
    return F.silu(gate) * up


def _post_attention(
    x: torch.Tensor,
    attn: torch.Tensor,
    o_w: Weight,
    norm_w: torch.Tensor,
    gate_up_w: Weight,
    down_w: Weight,
    eps: float,
    gate: Callable[..., torch.Tensor] = _silu_gate,
) -> torch.Tensor:
    """Output projection and residual, post-attention norm, SiLU-gated MLP (``gate``) and
    residual."""
    x = _residual(x, _matmul(attn.reshape(x.shape[0], -1), o_w))
    return _residual(x, _matmul(gate(_rms_norm(x, norm_w, eps), gate_up_w), down_w))


def _residual(x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """``x + update``, written so that inductor does not turn it into ``addmm``.

    Inductor rewrites ``x + a @ b`` as ``addmm(x, a, b)`` in half precision, which copies
    ``x`` into the output before every such matmul (216 copy kernels, 2.1 ms of one
    100-document query on the H100: benchmarks/results/probes/latency_probe_first_half.json)
    and adds before rounding the product. Through a view the pattern does not match: the
    matmul writes its product, rounded as transformers rounds it, and the add joins the next
    fused elementwise kernel: four layers of a 9216-token batch took 2.42 ms against 2.49
    (benchmarks/results/probes/residual_probe.json)."""
    halves = (x.shape[0], 2, x.shape[1] // 2)
    return (x.reshape(halves) + update.reshape(halves)).reshape(x.shape)


def _compile_for_tokens(
    fn: Callable[..., Any], token_args: int, mode: str | None = None
) -> Callable[..., Any]:
    """``torch.compile`` with only the batch-dependent sizes dynamic (dim 0 of the tensors in
    the first ``token_args`` arguments, or in tuples there: token, key, tile and sequence
    counts), so that batches of any size reuse the graph while head and hidden sizes stay
    constants. With ``dynamic=True`` those were symbolic too, and inductor emitted looped
    reductions: the q/k norm + RoPE kernel ran 6x under memory bandwidth on the H100
    (benchmarks/results/probes/latency_probe_dynamic_all.json). Integer arguments (max_q,
    max_k) become dynamic after their first change: one recompile. ``mode="reduce-overhead"``
    replays CUDA graphs: one per distinct set of sizes, run once as it is, recorded the second
    time it is seen, replayed from then on."""
    compiled = torch.compile(fn, dynamic=None, mode=mode)

    def run(*args: Any) -> Any:
        for arg in args[:token_args]:
            for tensor in arg if isinstance(arg, tuple) else (arg,):
                if isinstance(tensor, torch.Tensor):
                    torch._dynamo.mark_dynamic(tensor, 0)
        return compiled(*args)

    return run


def _all_layers(
    x: torch.Tensor,
    positions: torch.Tensor,
    last: torch.Tensor,
    main: tuple[Any, ...],
    final: tuple[Any, ...],
    layers: list[tuple[Any, ...]],
    rope: tuple[torch.Tensor, torch.Tensor],
    shape: tuple[int, int, int, float, float],
    attend: Callable[..., torch.Tensor],
    q_in_kernel: bool,
    gate: Callable[..., torch.Tensor] = _silu_gate,
    pre: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = _pre_attention,
    post: Callable[..., torch.Tensor] = _post_attention,
) -> torch.Tensor:
    """Every decoder layer, with ``attend(q, k, v, scale, *main)`` as attention (a kernel of
    ``_KERNELS``; with ``q_in_kernel`` it also gets the layer's q-norm weight, cos, sin and
    eps, and applies them to the raw q) and ``gate`` as the MLP's gated half. The last layer
    runs its queries, output projection and MLP on each document's last token only
    (``PackedBatch.final``, whose kernel arguments are ``final``); returns those rows. Each
    row's cos/sin are gathered at its position from ``rope`` (:func:`_rope_tables`).

    On CUDA it is compiled as one graph. Why: compiled piece by piece, launching one 8k-token
    batch took 18 ms of CPU for 21 ms of GPU work on the H100, so the GPU waited on Python
    between kernels; one graph launches them all from generated code
    (benchmarks/results/probes/latency_probe*.json). Elsewhere it runs as it is, with ``pre``
    and ``post`` (compiled piece by piece or not)."""
    heads, kv_heads, head_dim, eps, scale = shape
    cos, sin = rope[0][positions], rope[1][positions]
    for i, (ln1, qkv_w, qn, kn, o_w, ln2, gu_w, d_w) in enumerate(layers):
        q, k, v = pre(
            x, cos, sin, ln1, qkv_w, qn, kn, heads, kv_heads, head_dim, eps, not q_in_kernel
        )
        args = main
        if i == len(layers) - 1:  # only each document's last token is read after it
            q, x, args = q[last], x[last], final
        q_rope = (qn, cos, sin, eps) if q_in_kernel else ()
        x = post(x, attend(q, k, v, scale, *args, *q_rope), o_w, ln2, gu_w, d_w, eps, gate)
    return x


def _attention_call(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    attention: Attention,
    batch: PackedBatch,
) -> torch.Tensor:
    """An :data:`Attention` (``attention(q, k, v, batch, scale)``) in ``_all_layers``' calling
    convention, for the attentions that are not compiled kernels (CPU, fp32)."""
    return attention(q, k, v, batch, scale)


def attention_loop(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: PackedBatch, scale: float
) -> torch.Tensor:
    """Reference varlen attention: one SDPA call per sequence (any device, any dtype).

    Every attention function takes the packed rows' queries ``q [R, H, D]`` and keys and
    values ``k, v [T, KV, D]``; ``batch`` says which keys each query row sees."""
    out = torch.empty_like(q)
    k, v = k[batch.key_index], v[batch.key_index]
    cu_q, cu_k = batch.cu_q.tolist(), batch.cu_k.tolist()
    group = q.shape[1] // k.shape[1]
    for s in range(len(cu_q) - 1):
        qs = q[cu_q[s] : cu_q[s + 1]].transpose(0, 1)
        ks = k[cu_k[s] : cu_k[s + 1]].transpose(0, 1).repeat_interleave(group, dim=0)
        vs = v[cu_k[s] : cu_k[s + 1]].transpose(0, 1).repeat_interleave(group, dim=0)
        lq, lk = qs.shape[1], ks.shape[1]
        mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(diagonal=lk - lq)
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale)
        out[cu_q[s] : cu_q[s + 1]] = o.transpose(0, 1)
    return out


_GROUP_ELEMENTS = 2**20  # mask elements per group: bounds the padded score matrix
_PADDING_LIMIT = 1.5  # padded / real score elements per group: keeps prefixes and documents
#                       of very different lengths in separate SDPA calls


@dataclasses.dataclass
class AttentionGroup:
    """Sequences of similar length, padded to one shape for a single SDPA call."""

    q_index: torch.Tensor  # [G, Lq] packed rows of each sequence's queries (0 for padding)
    k_index: torch.Tensor  # [G, Lk] packed rows of its keys/values
    mask: torch.Tensor  # [G, 1, Lq, Lk] additive: 0 where a query sees a key, -inf elsewhere
    real: torch.Tensor  # flat positions in [G * Lq] of the real (unpadded) queries
    rows: torch.Tensor  # their packed rows: where the outputs go


def _plan_groups(
    cu_q: np.ndarray[Any, Any], cu_k: np.ndarray[Any, Any], device: torch.device, dtype: torch.dtype
) -> list[AttentionGroup]:
    lq, lk = np.diff(cu_q), np.diff(cu_k)
    order = np.lexsort((lk, lq))
    groups = []
    start = 0
    while start < len(order):
        end, widest = start + 1, lk[order[start]]
        work = lq[order[start]] * widest  # score elements the group's sequences really need
        while end < len(order):
            seq = order[end]
            wider, more = max(widest, lk[seq]), work + lq[seq] * lk[seq]
            padded = (end - start + 1) * lq[seq] * wider
            if padded > _GROUP_ELEMENTS or padded > _PADDING_LIMIT * more:
                break
            end, widest, work = end + 1, wider, more
        seqs = order[start:end]
        nq, nk = lq[seqs][:, None], lk[seqs][:, None]
        rows, cols = np.arange(nq.max())[None, :], np.arange(nk.max())[None, :]
        q_real, k_real = rows < nq, cols < nk
        q_idx = np.where(q_real, cu_q[seqs][:, None] + rows, 0)
        k_idx = np.where(k_real, cu_k[seqs][:, None] + cols, 0)
        causal = cols[:, None, :] <= rows[:, :, None] + (nk - nq)[:, :, None]
        # padded query rows see key 0 only, so no row of the softmax is empty
        seen = (k_real[:, None, :] & causal) | (~q_real[:, :, None] & (cols == 0)[:, None, :])
        mask = torch.zeros(seen.shape, dtype=dtype).masked_fill_(
            torch.from_numpy(~seen), -torch.inf
        )
        real = np.flatnonzero(q_real)
        q_index, k_index, real_t, rows_t = (
            torch.from_numpy(a).to(device) for a in (q_idx, k_idx, real, q_idx.ravel()[real])
        )
        groups.append(AttentionGroup(q_index, k_index, mask[:, None].to(device), real_t, rows_t))
        start = end
    return groups


def attention_grouped(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: PackedBatch, scale: float
) -> torch.Tensor:
    """Varlen attention as a few padded SDPA calls over length-sorted groups of sequences:
    far fewer calls than one per sequence (CPU, or fp32 anywhere). The plan, with float
    masks (faster than boolean ones in CPU SDPA), is made once per batch; grouped-query
    heads are shared inside SDPA instead of being copied out per head."""
    out = torch.empty_like(q)
    k, v = k[batch.key_index], v[batch.key_index]
    for g in batch.attention_groups(q.device, q.dtype):
        qs = q[g.q_index].transpose(1, 2)
        ks, vs = k[g.k_index].transpose(1, 2), v[g.k_index].transpose(1, 2)
        o = F.scaled_dot_product_attention(
            qs, ks, vs, attn_mask=g.mask, scale=scale, enable_gqa=True
        )
        out[g.rows] = o.transpose(1, 2).flatten(0, 1)[g.real]
    return out


def attention_flash(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: PackedBatch, scale: float
) -> torch.Tensor:
    """FlashAttention-2 varlen kernel shipped in PyTorch (CUDA, 16-bit): GQA, causal
    masks aligned bottom-right when a sequence has more keys than queries. Each sequence's
    keys are gathered first (prefix rows repeated for every document)."""
    return _flash(q, k, v, scale, *_flash_args(batch))


def attention_prefix(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: PackedBatch, scale: float
) -> torch.Tensor:
    """The Triton kernel of :mod:`.prefix_attention` (CUDA, 16-bit): reads the packed rows in
    place, no gathers."""
    return _prefix(q, k, v, scale, *_prefix_args(batch))


def _flash_args(batch: PackedBatch) -> tuple[Any, ...]:
    return batch.key_index, batch.cu_q, batch.cu_k, batch.max_q, batch.max_k


def _prefix_args(batch: PackedBatch) -> tuple[Any, ...]:
    return batch.tiles, batch.tile_rows, batch.key_block


def _flash(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    key_index: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    max_q: int,
    max_k: int,
) -> torch.Tensor:
    out = torch.ops.aten._flash_attention_forward(
        q, k[key_index], v[key_index], cu_q, cu_k, max_q, max_k, 0.0, True, False, scale=scale
    )
    result: torch.Tensor = out[0]
    return result


def _prefix(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    tiles: torch.Tensor,
    tile_rows: int,
    key_block: int,
    *rope_q: Any,
) -> torch.Tensor:
    return prefix_attention(q, k, v, tiles, scale, tile_rows, key_block, rope_q or None)


# The attentions the compiled all-layers graph can run: the kernel call, its arguments from a
# batch (tensors and ints only, so the graph takes them as inputs), and whether it applies
# the q-norm and RoPE itself.
_KERNELS: dict[
    Attention, tuple[Callable[..., torch.Tensor], Callable[..., tuple[Any, ...]], bool]
] = {
    attention_flash: (_flash, _flash_args, False),
    attention_prefix: (_prefix, _prefix_args, True),
}


def _step(n: int, per_octave: int) -> int:
    return 1 << max(0, n.bit_length() - per_octave.bit_length())


def _bucket(n: int, per_octave: int = 4) -> int:
    """``n`` rounded up to one of ``per_octave`` sizes per power of two (a power of two
    itself), at least 8: CUDA graphs have fixed shapes, and a few sizes keep both the padding
    and the number of graphs small."""
    step = _step(n, per_octave)
    return max(8, -(-n // step) * step)


# Rows are padded to eight sizes per power of two (at most 12.5% more), tiles and documents to
# four: rows set the cost of every matmul, tiles and documents cost little.
_ROW_SIZES = 8


def graph_rows(n: int) -> int:
    """The largest padded row count that is at most ``n``: batches planned with this token
    budget fill their CUDA graphs with little padding."""
    step = _step(n, _ROW_SIZES)
    return max(8, n // step * step)


class PackedQwen3:
    """Qwen3 decoder weights laid out for packed reranking, with a yes/no scoring head.

    Args:
        body: The transformers ``Qwen3Model`` (weights are copied out; it can be freed).
        direction: ``w_yes - w_no`` of the LM head, fp32.
        offset: ``b_yes - b_no`` (0 for Qwen3).
        device: Where to run.
        compile: Fuse the per-token work with ``torch.compile`` (GPU).
        embed_on_cpu: Keep the 151669-row embedding table in host memory (saves ~0.3 GiB of
            GPU memory on 0.6B; each batch's rows are gathered on the CPU and copied over).
        cuda_graphs: Replay each batch of at most ``max_graph_rows`` rows as a CUDA graph
            (with ``compile``, on CUDA, with the prefix kernel).
        fp8: Hold the projection weights in FP8 with per-row scales and run those matmuls in
            FP8 with per-token activation scales (``torch._scaled_mm``): half the weight
            memory, faster matmuls on Hopper GPUs, scores a little less exact. Needs bf16.
        max_positions: Positions the RoPE tables cover (default: the model's
            ``max_position_embeddings``; the engine passes its ``max_length``).
    """

    def __init__(
        self,
        body: Any,
        direction: torch.Tensor,
        offset: float,
        device: torch.device,
        *,
        compile: bool = False,
        cuda_graphs: bool = False,
        embed_on_cpu: bool = False,
        fp8: bool = False,
        max_positions: int | None = None,
    ) -> None:
        config = body.config
        self.device = device
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)
        self.eps = float(config.rms_norm_eps)
        self.scale = self.head_dim**-0.5
        self.intermediate = int(config.intermediate_size)
        self.dtype = body.embed_tokens.weight.dtype

        def put(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(device=device, dtype=self.dtype).contiguous()

        def project(*parts: torch.Tensor) -> Weight:
            weight = torch.cat([p.detach() for p in parts]) if len(parts) > 1 else parts[0]
            if not fp8:
                return put(weight)
            quantized, scale = quantize_fp8(weight)
            return quantized.to(device), scale.to(device)

        embed = body.embed_tokens.weight.detach().to(self.dtype).contiguous()
        self.embed_on_host = embed_on_cpu and device.type == "cuda"
        self.embed = embed.pin_memory() if self.embed_on_host else put(embed)
        self.layers: list[tuple[Any, ...]] = []
        for layer in body.layers:
            a, m = layer.self_attn, layer.mlp
            self.layers.append(
                (
                    put(layer.input_layernorm.weight),
                    project(a.q_proj.weight, a.k_proj.weight, a.v_proj.weight),
                    put(a.q_norm.weight),
                    put(a.k_norm.weight),
                    project(a.o_proj.weight),
                    put(layer.post_attention_layernorm.weight),
                    project(m.gate_proj.weight, m.up_proj.weight),
                    project(m.down_proj.weight),
                )
            )
        self.norm = put(body.norm.weight)
        rotary = body.rotary_emb
        self.rope = _rope_tables(
            torch.arange(max_positions or int(config.max_position_embeddings), device=device),
            rotary.inv_freq.detach().float().to(device),
            float(getattr(rotary, "attention_scaling", 1.0)),
            self.dtype,
        )
        self.direction = direction.to(device)
        self.offset = offset
        self.attention: Attention = attention_grouped
        self.gate: Callable[..., torch.Tensor] = _silu_gate
        self._pre: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = _pre_attention
        self._post: Callable[..., torch.Tensor] = _post_attention
        self._all_layers: Callable[..., torch.Tensor] | None = None
        if compile:
            self._pre = _compile_for_tokens(_pre_attention, token_args=3)
            self._post = _compile_for_tokens(_post_attention, token_args=2)
            self._all_layers = _compile_for_tokens(_all_layers, token_args=5)
        self._graphed: Callable[..., torch.Tensor] | None = None
        # Batches of more rows run without graphs (the engine sets it to its memory-sized
        # budget: a graph's memory stays reserved in its pool, and a larger batch, of a
        # user-set budget, runs long enough on the GPU to hide its launch).
        self.max_graph_rows = 2**62
        if compile and cuda_graphs and device.type == "cuda":
            # weights and RoPE tables: inputs the graphs read in place, never copy
            for t in (*self._layer_tensors(), *self.rope):
                torch._dynamo.mark_static_address(t)
            self._graphed = _compile_for_tokens(_all_layers, token_args=5, mode="reduce-overhead")

    def _layer_tensors(self) -> list[torch.Tensor]:
        """Every tensor of the decoder layers (an FP8 weight is two: values and scales)."""
        return [
            t for layer in self.layers for w in layer for t in (w if isinstance(w, tuple) else (w,))
        ]

    @property
    def replays_graphs(self) -> bool:
        """Whether batches replay CUDA graphs: ``score`` then costs the CPU ~2-3.5 ms a batch
        (benchmarks/results/probes/launch_probe_inputs.json) instead of ~8 ms for the launch
        alone."""
        return self._graphed is not None and self.attention is attention_prefix

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights held on the device."""
        tensors = [self.norm, *self.rope, *self._layer_tensors()]
        if not self.embed_on_host:
            tensors.append(self.embed)
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def activation_bytes_per_token(self) -> int:
        """Upper estimate of transient memory per packed token, for sizing batches."""
        hidden = int(self.embed.shape[1])
        qkv = (self.heads + 2 * self.kv_heads) * self.head_dim
        inter = self.intermediate
        size = self.embed.element_size()
        # residual + norm out + attn out, q/k/v (raw and rotated), gate/up/act, and the keys
        # and values gathered per sequence (not by the prefix kernel, which reads them in place)
        gathered = 0 if self.attention is attention_prefix else 4 * self.kv_heads * self.head_dim
        return size * (4 * hidden + 2 * qkv + gathered + 4 * inter)

    def choose_attention(self) -> None:
        """Picks the fastest attention that runs here and agrees with the reference loop on a
        small batch (both its layers' shapes): the Triton prefix kernel, else FlashAttention
        varlen (CUDA, 16-bit). Keeps grouped SDPA on CPU and the loop for fp32 on GPU."""
        if self.device.type == "cpu":
            return
        self.attention = attention_loop
        if self.dtype == torch.float32:
            return
        gen = torch.Generator(device="cpu").manual_seed(0)
        docs = [(0, [3] * 50), (1, [4] * 9), (0, [5] * 130)]
        batch = pack([[1] * 37, [2] * 5], docs, head=[6] * 11).to(self.device)
        rows = int(batch.cu_q[-1])
        q = torch.randn(rows, self.heads, self.head_dim, generator=gen).to(self.device, self.dtype)
        kv = torch.randn(2, rows, self.kv_heads, self.head_dim, generator=gen)
        k, v = (t.to(self.device, self.dtype) for t in kv)
        final = batch.final()
        cases = ((q, batch), (q[batch.last], final))
        want = [attention_loop(qs, k, v, part, self.scale).float() for qs, part in cases]
        for candidate in (attention_prefix, attention_flash):
            if candidate is attention_prefix and not prefix_attention_available():
                continue
            try:
                got = [candidate(qs, k, v, part, self.scale).float() for qs, part in cases]
            except Exception:  # any failure to build or run it rules the kernel out
                continue
            if all(
                g.shape == w.shape and torch.allclose(g, w, atol=2e-2, rtol=0)
                for g, w in zip(got, want, strict=True)
            ):
                self.attention = candidate
                return

    def choose_gate(self) -> None:
        """Uses the fused gate/up + SiLU kernel (:mod:`.gated_mlp`) where it runs and agrees
        with the unfused MLP on a small batch: CUDA, 16-bit, weights not in FP8. Per layer of a
        9216-row batch on the H100 it takes 0.214 ms against 0.235 for cuBLAS and inductor's
        kernel, with the same values; one 100-document query's GPU work went from 56.3 to
        54.8 ms (benchmarks/results/probes/mlp_probe.json, latency_probe_gated_mlp.json)."""
        self.gate = _silu_gate
        weight = self.layers[0][6]
        if (
            self.device.type != "cuda"
            or self.dtype == torch.float32
            or not isinstance(weight, torch.Tensor)
            or not gated_mlp_available()
        ):
            return
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(37, weight.shape[1], generator=gen).to(self.device, self.dtype)
        if not gated_mlp_fits(x, weight):
            return
        want = _silu_gate(x, weight).float()
        try:
            got = gated_mlp(x, weight).float()
        except Exception:  # any failure to build or run it rules the kernel out
            return
        if got.shape == want.shape and bool(
            (got - want).abs().max() <= 1e-2 * want.abs().max().clamp(min=1e-6)
        ):
            self.gate = gated_mlp

    def _embedded(self, host_tokens: torch.Tensor, tokens: torch.Tensor, rows: int) -> torch.Tensor:
        """The embedding rows of a batch's tokens, ``rows`` of them (padding rows: zeros when
        the rows are gathered on the host, else the embedding of the padding token 0).

        On the host, ``index_select`` gathers straight into a pinned buffer of ``rows`` rows,
        copied in one go. Indexing (``embed[ids]``) then ``pin_memory()`` copied the rows twice
        and padded them on the GPU; on the H100's host its ``pin_memory()`` alone took 6.6-11.9
        ms of a 12897-row launch, the gather now 3.9-6.2 ms
        (benchmarks/results/probes/launch_probe_max_memory_gather.json)."""
        if self.embed_on_host:  # gather the rows on the CPU, copy only those
            n = len(host_tokens)
            gathered = torch.empty(
                (rows, self.embed.shape[1]), dtype=self.embed.dtype, pin_memory=True
            )
            torch.index_select(self.embed, 0, host_tokens, out=gathered[:n])
            gathered[n:] = 0
            return gathered.to(self.device, non_blocking=True)
        return self.embed[tokens]

    @torch.inference_mode()
    def score(self, batch: PackedBatch) -> torch.Tensor:
        """fp32 P(yes) of each document of a packed batch built on the CPU by :func:`pack`."""
        n = len(batch.last)
        if batch.max_k > len(self.rope[0]):  # the longest sequence's keys: its last position + 1
            raise ValueError(
                f"position {batch.max_k - 1} is past the RoPE tables' {len(self.rope[0])}: "
                "raise max_positions"
            )
        kernel = _KERNELS.get(self.attention)
        shape = (self.heads, self.kv_heads, self.head_dim, self.eps, self.scale)
        graphed = self.replays_graphs and len(batch.tokens) <= self.max_graph_rows
        compiled = self._graphed if graphed else self._all_layers
        if compiled is None or kernel is None:  # layer by layer, any attention
            on_device = batch.to(self.device)
            x = _all_layers(
                self._embedded(batch.tokens, on_device.tokens, len(batch.tokens)),
                on_device.positions,
                on_device.last,
                (self.attention, on_device),
                (self.attention, on_device.final()),
                self.layers,
                self.rope,
                shape,
                _attention_call,
                False,
                self.gate,
                self._pre,
                self._post,
            )
        else:
            attend, args, q_in_kernel = kernel
            if graphed:
                # CUDA graphs have fixed shapes: rows, tiles and documents are padded on the
                # host up to a few sizes (padding rows and tiles compute nothing that is read)
                # and copied in one go, so that little but the replay is launched.
                rows, docs = _bucket(len(batch.tokens), _ROW_SIZES), _bucket(n)
                tokens, positions, last, tiles, final_tiles = moved(
                    (batch.tokens, batch.positions, batch.last, batch.tiles, batch.final_tiles),
                    self.device,
                    (rows, rows, docs, _bucket(len(batch.tiles)), docs),
                )
                x = self._embedded(batch.tokens, tokens, rows)
                main = (tiles, *args(batch)[1:])
                ends = (final_tiles, *args(batch.final())[1:])
            else:
                on_device = batch.to(self.device)
                x = self._embedded(batch.tokens, on_device.tokens, len(batch.tokens))
                positions, last = on_device.positions, on_device.last
                main, ends = args(on_device), args(on_device.final())
            try:
                x = compiled(
                    x,
                    positions,
                    last,
                    main,
                    ends,
                    self.layers,
                    self.rope,
                    shape,
                    attend,
                    q_in_kernel,
                    self.gate,
                )[:n]
            except torch.OutOfMemoryError:
                if graphed:
                    # Out of memory while recording a graph leaves cudagraph trees' state
                    # broken (later recordings, of any engine in the process, fail an
                    # assertion): start the trees afresh and go on without graphs; the
                    # caller retries smaller.
                    self._graphed = None
                    from torch._inductor.cudagraph_trees import reset_cudagraph_trees

                    reset_cudagraph_trees()
                raise
        last = _rms_norm(x, self.norm, self.eps)  # the last layer kept only these rows
        return torch.sigmoid(last.float() @ self.direction + self.offset)
