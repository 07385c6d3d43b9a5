"""Which attention runs over the packed rows: five backends, and :func:`select`.

Every backend takes the packed rows' queries ``q [R, H, D]`` and keys and values
``k, v [T, KV, D]``; the batch says which keys each query row sees. ``loop`` is the reference
(one SDPA call per sequence); ``grouped`` pads sequences of similar length into a few SDPA
calls (CPU); ``flash`` is the FlashAttention-2 varlen kernel PyTorch ships (CUDA, 16-bit);
``fa3`` is FlashAttention-3 as vLLM builds it (Hopper GPUs, where vLLM is installed);
``prefix`` is our Triton kernel, which reads each document's shared prefix in place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConfigurationError
from .compat import flash_attention_varlen
from .kernels import scaffold
from .kernels.prefix_attention import prefix_attention
from .layers import ModelDims
from .layout import PackedBatch, pack
from .transfer import on_device

__all__ = ["BACKENDS", "AttentionBackend", "eager_attend", "select"]

logger = logging.getLogger("qwen3_rerank.engines.torch")

GROUP_ELEMENTS = 2**20  # mask elements per group: bounds the padded score matrix
PADDING_LIMIT = 1.5  # padded / real score elements per group: keeps prefixes and documents
#                      of very different lengths in separate SDPA calls
CAUSAL_ELEMENTS = 2**18  # score elements past which a sequence alone runs unmasked, causal


class AttentionBackend:
    """One way to run varlen attention over a packed batch.

    ``kernel`` (with ``kernel_args``) is its call in the convention of the compiled
    all-layers graph (tensors and ints only, so the graph takes them as inputs), or ``None``
    for a backend that runs only eagerly, layer by layer.
    """

    name = ""
    kernel: Callable[..., torch.Tensor] | None = None
    q_in_kernel = False  # the kernel applies the q-norm and RoPE itself
    gathers_keys = True  # copies each sequence's keys and values out (activation memory)

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: PackedBatch, scale: float
    ) -> torch.Tensor:
        if self.kernel is None:
            raise NotImplementedError
        return self.kernel(q, k, v, scale, *self.kernel_args(batch))

    def kernel_args(self, batch: PackedBatch) -> tuple[Any, ...]:
        """The batch's part of ``kernel``'s arguments."""
        return ()

    def unavailable(self, device: torch.device, dtype: torch.dtype) -> str | None:
        """Why it cannot run here, or ``None``."""
        return None


class LoopAttention(AttentionBackend):
    """The reference: one SDPA call per sequence (any device, any dtype)."""

    name = "loop"

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: PackedBatch, scale: float
    ) -> torch.Tensor:
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


class GroupedAttention(AttentionBackend):
    """A few padded SDPA calls over length-sorted groups of sequences: far fewer calls than
    one per sequence. The plan, with float masks (faster than boolean ones in CPU SDPA), is
    made once per batch; grouped-query heads are shared inside SDPA instead of being copied
    out per head.

    A long sequence alone in its group runs without a mask: its queries are taken at all of
    its key rows (head and prefix rows too, whose queries the batch has), which makes its
    bottom-right causal mask a plain causal one, and SDPA's causal kernel skips the masked
    half instead of reading a materialised mask (docs/how-it-works.md#on-cpu)."""

    name = "grouped"

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: PackedBatch, scale: float
    ) -> torch.Tensor:
        out = torch.empty_like(q)
        k, v = k[batch.key_index], v[batch.key_index]
        if self.name not in batch.plans:
            batch.plans[self.name] = plan_groups(batch, q.device, q.dtype)
        for g in batch.plans[self.name]:
            qs = q[g.q_index].transpose(1, 2)
            ks, vs = k[g.k_index].transpose(1, 2), v[g.k_index].transpose(1, 2)
            o = F.scaled_dot_product_attention(
                qs, ks, vs, attn_mask=g.mask, is_causal=g.mask is None, scale=scale, enable_gqa=True
            )
            out[g.rows] = o.transpose(1, 2).flatten(0, 1)[g.real]
        return out


@dataclasses.dataclass
class AttentionGroup:
    """Sequences of similar length, padded to one shape for a single SDPA call."""

    q_index: torch.Tensor  # [G, Lq] packed rows of each sequence's queries (0 for padding)
    k_index: torch.Tensor  # [G, Lk] packed rows of its keys/values
    mask: torch.Tensor | None  # [G, 1, Lq, Lk] additive: 0 where a query sees a key, -inf
    #                            elsewhere; None: plain causal, queries at the key rows
    real: torch.Tensor  # flat positions in [G * Lq] of the real (unpadded) queries
    rows: torch.Tensor  # their packed rows: where the outputs go


def plan_groups(
    batch: PackedBatch, device: torch.device, dtype: torch.dtype
) -> list[AttentionGroup]:
    """Sequences gathered into padded groups by length, each with its causal mask aligned
    bottom-right; a group closes when it would exceed :data:`GROUP_ELEMENTS` or pad more than
    :data:`PADDING_LIMIT` times the work its sequences need."""
    cu_q, cu_k = batch.cu_q.cpu().numpy(), batch.cu_k.cpu().numpy()
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
            if padded > GROUP_ELEMENTS or padded > PADDING_LIMIT * more:
                break
            end, widest, work = end + 1, wider, more
        seqs = order[start:end]
        if end - start == 1 and batch.row_queries and lq[seqs[0]] * lk[seqs[0]] > CAUSAL_ELEMENTS:
            groups.append(_causal_group(batch, int(seqs[0]), device))
            start = end
            continue
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


def _causal_group(batch: PackedBatch, seq: int, device: torch.device) -> AttentionGroup:
    """Sequence ``seq`` as a plain causal square: queries at its key rows, outputs of its own
    (last) rows kept."""
    k_from, k_to = int(batch.cu_k[seq]), int(batch.cu_k[seq + 1])
    q_from, q_to = int(batch.cu_q[seq]), int(batch.cu_q[seq + 1])
    keys = torch.arange(k_from, k_to)
    return AttentionGroup(
        q_index=batch.key_index[k_from:k_to].to(device)[None],
        k_index=keys.to(device)[None],
        mask=None,
        real=torch.arange(k_to - k_from - (q_to - q_from), k_to - k_from, device=device),
        rows=torch.arange(q_from, q_to, device=device),
    )


def _gathered(varlen: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A kernel in the all-layers convention that gathers each sequence's keys and values
    (prefix rows repeated per document), then runs ``varlen(q, k, v, lengths, scale)``."""

    def kernel(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        scale: float,
        key_index: torch.Tensor,
        lengths: tuple[Any, ...],
    ) -> torch.Tensor:
        return varlen(q, k[key_index], v[key_index], lengths, scale)

    return kernel


class FlashAttention(AttentionBackend):
    """FlashAttention-2 varlen, shipped in PyTorch (CUDA, 16-bit): GQA, causal masks aligned
    bottom-right. Each sequence's keys are gathered first (prefix rows repeated per
    document)."""

    name = "flash"
    kernel = staticmethod(_gathered(flash_attention_varlen))

    def kernel_args(self, batch: PackedBatch) -> tuple[Any, ...]:
        return batch.key_index, (batch.cu_q, batch.cu_k, batch.max_q, batch.max_k)

    def unavailable(self, device: torch.device, dtype: torch.dtype) -> str | None:
        if device.type != "cuda":
            return "needs CUDA"
        return "needs float16 or bfloat16" if dtype == torch.float32 else None


@torch.library.custom_op("qwen3_rerank::vllm_fa3_varlen", mutates_args=())
def _vllm_fa3(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    max_q: int,
    max_k: int,
    scale: float,
) -> torch.Tensor:
    """vLLM's FlashAttention-3 varlen forward as a PyTorch custom op: ``torch.compile`` cannot
    trace into vLLM's extension, and sees the fake below instead."""
    from vllm.vllm_flash_attn import flash_attn_varlen_func

    out: torch.Tensor = flash_attn_varlen_func(
        q,
        k,
        v,
        max_q,
        cu_q,
        max_k,
        cu_seqlens_k=cu_k,
        softmax_scale=scale,
        causal=True,
        fa_version=3,
    )
    return out


@_vllm_fa3.register_fake
def _(q: torch.Tensor, *_: Any) -> torch.Tensor:
    return torch.empty_like(q)


def _vllm_fa3_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: tuple[Any, ...], scale: float
) -> torch.Tensor:
    cu_q, cu_k, max_q, max_k = lengths
    out: torch.Tensor = _vllm_fa3(q, k, v, cu_q, cu_k, max_q, max_k, scale)
    return out


class VllmFlashAttention3(FlashAttention):
    """FlashAttention-3 varlen as vLLM ships it (Hopper, 16-bit; vLLM installed): causal masks
    aligned bottom-right, each sequence's keys gathered first, as for ``flash``."""

    name = "fa3"
    kernel = staticmethod(_gathered(_vllm_fa3_varlen))

    def unavailable(self, device: torch.device, dtype: torch.dtype) -> str | None:
        why_not = super().unavailable(device, dtype)
        if why_not is not None:
            return why_not
        try:
            from vllm.vllm_flash_attn import fa_version_unsupported_reason
        except ImportError as exc:
            return f"needs vLLM's FlashAttention build ({exc})"
        reason: str | None = fa_version_unsupported_reason(3)
        return reason


def _prefix(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    tiling: tuple[Any, ...],
    *rope_q: Any,
) -> torch.Tensor:
    tiles, tile_rows, key_block = tiling
    return prefix_attention(
        q, k, v, tiles, scale, block_m=tile_rows, block_n=key_block, rope_q=rope_q or None
    )


class PrefixAttention(AttentionBackend):
    """Our Triton kernel (:mod:`.kernels.prefix_attention`): reads the packed rows in place,
    no gathers, and applies the q-norm and RoPE as it loads each tile."""

    name = "prefix"
    kernel = staticmethod(_prefix)
    q_in_kernel = True
    gathers_keys = False

    def kernel_args(self, batch: PackedBatch, tiles: torch.Tensor | None = None) -> tuple[Any, ...]:
        """``tiles`` replaces the batch's tile table (padded, for a CUDA graph)."""
        return ((batch.tiles if tiles is None else tiles, batch.tile_rows, batch.key_block),)

    def unavailable(self, device: torch.device, dtype: torch.dtype) -> str | None:
        if not scaffold.available():
            return "Triton is not installed"
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            return "needs CUDA (or Triton's interpreter: TRITON_INTERPRET=1)"
        if device.type != "cuda" and dtype == torch.bfloat16:
            # the interpreter multiplies bfloat16's bit patterns (triton-lang/triton#11584)
            return "Triton's interpreter computes bfloat16 products wrongly: use float32"
        return None


LOOP, GROUPED, FLASH, FA3, PREFIX = (
    LoopAttention(),
    GroupedAttention(),
    FlashAttention(),
    VllmFlashAttention3(),
    PrefixAttention(),
)
BACKENDS: dict[str, AttentionBackend] = {b.name: b for b in (PREFIX, FA3, FLASH, GROUPED, LOOP)}


def eager_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    backend: AttentionBackend,
    batch: PackedBatch,
) -> torch.Tensor:
    """Any backend in the all-layers calling convention, run eagerly layer by layer: its
    arguments are the backend and the batch."""
    return backend(q, k, v, batch, scale)


def select(
    requested: str, device: torch.device, dtype: torch.dtype, dims: ModelDims
) -> AttentionBackend:
    """The backend asked for, or for ``"auto"``: grouped on CPU, the loop in fp32 on GPU,
    else the first of prefix and flash that runs here and agrees with the loop on small
    batches of short and of long documents (both layer shapes), else the loop. Logs the
    choice and every candidate ruled out.

    Raises:
        ConfigurationError: The backend asked for cannot run here.
    """
    if requested != "auto":
        backend = BACKENDS[requested]
        why_not = backend.unavailable(device, dtype)
        if why_not is not None:
            raise ConfigurationError(f"attention={requested!r} cannot run here: {why_not}")
        logger.info("attention: %s, as asked", backend.name)
        return backend
    if device.type == "cpu":
        logger.info("attention: grouped (CPU)")
        return GROUPED
    if dtype == torch.float32:
        logger.info("attention: loop (float32 on %s)", device)
        return LOOP
    for candidate in (PREFIX, FLASH):
        why_not = candidate.unavailable(device, dtype) or _disagrees(candidate, device, dtype, dims)
        if why_not is None:
            logger.info("attention: %s (agrees with the reference at start-up)", candidate.name)
            return candidate
        logger.info("attention: %s ruled out: %s", candidate.name, why_not)
    logger.info("attention: loop (no faster backend runs here)")
    return LOOP


def _disagrees(
    candidate: AttentionBackend, device: torch.device, dtype: torch.dtype, dims: ModelDims
) -> str | None:
    """Why ``candidate`` fails its self-test against the loop, or ``None`` when it passes.
    It runs a batch of short documents and one of long ones (the prefix kernel's two loops
    and tile shapes), each in both layer shapes."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    short = [(0, [3] * 50), (1, [4] * 9), (0, [5] * 130)]
    long = [(0, [3] * 600), (1, [4] * 70)]
    cases = []
    for docs in (short, long):
        batch = pack([[1] * 37, [2] * 5], docs, head=[6] * 11, group=dims.group)
        batch = on_device(batch, device)
        rows = int(batch.cu_q[-1])
        q = torch.randn(rows, dims.heads, dims.head_dim, generator=gen).to(device, dtype)
        kv = torch.randn(2, rows, dims.kv_heads, dims.head_dim, generator=gen)
        k, v = (t.to(device, dtype) for t in kv)
        cases += [(q, k, v, batch), (q[batch.last], k, v, batch.final())]
    want = [LOOP(qs, k, v, part, dims.scale).float() for qs, k, v, part in cases]
    try:
        got = [candidate(qs, k, v, part, dims.scale).float() for qs, k, v, part in cases]
    except Exception as exc:  # any failure to build or run a kernel rules it out, logged
        return f"its self-test raised {type(exc).__name__}: {exc}"
    for g, w in zip(got, want, strict=True):
        if g.shape != w.shape or not torch.allclose(g, w, atol=2e-2, rtol=0):
            return "its self-test disagrees with the reference loop"
    return None
