"""The Qwen3 decoder layer's arithmetic on packed rows, with named weights and dimensions.

The arithmetic matches transformers' Qwen3 layer by layer (same dtypes, same order), so
results equal the reference path up to float noise. The per-token work around attention
(RMSNorm, q/k head norms, RoPE, SiLU-gate, residuals) is in plain functions that
``torch.compile`` can fuse on GPU. Weights and dimensions are named tuples: named for readers,
and plain tuples to ``torch.compile``, whose graphs take their tensors as inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from .compat import scaled_mm

__all__ = [
    "Decoder",
    "Fp8Weight",
    "LayerWeights",
    "ModelDims",
    "Weight",
    "all_layers",
    "matmul",
    "post_attention",
    "pre_attention",
    "quantize_fp8",
    "rms_norm",
    "rope_tables",
    "rotate",
    "silu_gate",
]

FP8_MAX = 448.0  # the largest float8_e4m3fn value


class Fp8Weight(NamedTuple):
    """A projection weight ``[out, in]`` in float8_e4m3fn, with one fp32 scale per output row
    (``[1, out]``, as the FP8 matmul takes it)."""

    values: torch.Tensor
    scale: torch.Tensor


Weight = torch.Tensor | Fp8Weight  # a projection weight [out, in]


class LayerWeights(NamedTuple):
    """One decoder layer's weights, the projections fused as the packed forward runs them."""

    input_norm: torch.Tensor
    qkv: Weight  # q, k and v projections stacked
    q_norm: torch.Tensor
    k_norm: torch.Tensor
    o: Weight
    post_norm: torch.Tensor
    gate_up: Weight  # gate and up projections stacked
    down: Weight


class ModelDims(NamedTuple):
    """The sizes and constants every layer shares."""

    heads: int
    kv_heads: int
    head_dim: int
    eps: float  # RMSNorm's
    scale: float  # the attention softmax scale, head_dim ** -0.5

    @property
    def group(self) -> int:
        """Query heads per key/value head (grouped-query attention)."""
        return self.heads // self.kv_heads


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' Qwen3RMSNorm: normalise in fp32, scale in the model dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rope_tables(
    positions: torch.Tensor, inv_freq: torch.Tensor, scaling: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[T, head_dim]`` at each position, as transformers' rotary embedding makes
    them (fp32 angles, scaled, then rounded to ``dtype``). Made once for every position and
    gathered by row: computed per batch they cost launches, and computed inside the compiled
    graph inductor recomputed them in every layer's kernel."""
    freqs = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat((freqs, freqs), dim=-1)
    return (angles.cos() * scaling).to(dtype), (angles.sin() * scaling).to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE, rotate-half form."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def quantize_fp8(weight: torch.Tensor) -> Fp8Weight:
    """A weight [out, in] as float8_e4m3fn, scaled per output row so each row spans the
    format's range."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=1e-12)
    return Fp8Weight((w / scale).to(torch.float8_e4m3fn), scale.t().contiguous())


def matmul(x: torch.Tensor, weight: Weight) -> torch.Tensor:
    """``x @ weight.T``. For an FP8 weight, each row of ``x`` is scaled to FP8 on the fly
    (under ``torch.compile`` inductor can fuse that with the op that produced ``x``) and the
    FP8 product is rescaled to ``x``'s dtype."""
    if isinstance(weight, torch.Tensor):
        return x @ weight.t()
    x_scale = (x.abs().amax(dim=-1, keepdim=True).float() / FP8_MAX).clamp(min=1e-12)
    xq = (x.float() / x_scale).to(torch.float8_e4m3fn)
    return scaled_mm(xq, weight.values.t(), x_scale, weight.scale, x.dtype)


def pre_attention(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    layer: LayerWeights,
    dims: ModelDims,
    rotate_q: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input norm, fused q/k/v projection, per-head q/k norms and RoPE (q left raw when the
    attention kernel normalises and rotates it itself: ``rotate_q=False``)."""
    heads, kv_heads, head_dim, eps = dims.heads, dims.kv_heads, dims.head_dim, dims.eps
    h = rms_norm(x, layer.input_norm, eps)
    qkv = matmul(h, layer.qkv)
    q_end, k_end = heads * head_dim, (heads + kv_heads) * head_dim
    q = qkv[:, :q_end].reshape(-1, heads, head_dim)
    k = rms_norm(qkv[:, q_end:k_end].reshape(-1, kv_heads, head_dim), layer.k_norm, eps)
    v = qkv[:, k_end:]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    if rotate_q:
        q = rotate(rms_norm(q, layer.q_norm, eps), cos, sin)
    return q, rotate(k, cos, sin), v.reshape(-1, kv_heads, head_dim)


def silu_gate(h: torch.Tensor, gate_up: Weight) -> torch.Tensor:
    """``silu(h @ gate.T) * (h @ up.T)``: the MLP up to its down projection."""
    gate, up = matmul(h, gate_up).chunk(2, dim=-1)
    return F.silu(gate) * up


def post_attention(
    x: torch.Tensor,
    attn: torch.Tensor,
    layer: LayerWeights,
    eps: float,
    gate: Callable[..., torch.Tensor] = silu_gate,
) -> torch.Tensor:
    """Output projection and residual, post-attention norm, SiLU-gated MLP (``gate``) and
    residual."""
    x = _residual(x, matmul(attn.reshape(x.shape[0], -1), layer.o))
    mlp = matmul(gate(rms_norm(x, layer.post_norm, eps), layer.gate_up), layer.down)
    return _residual(x, mlp)


def _residual(x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """``x + update``, written so that inductor does not turn it into ``addmm``: that copies
    ``x`` into the output before every such matmul and adds before rounding the product.
    Through a view the pattern does not match: the matmul writes its product, rounded as
    transformers rounds it, and the add joins the next fused elementwise kernel."""
    halves = (x.shape[0], 2, x.shape[1] // 2)
    return (x.reshape(halves) + update.reshape(halves)).reshape(x.shape)


class Decoder(NamedTuple):
    """Everything :func:`all_layers` runs besides the batch: weights, and which functions
    make up a layer (constants of a compiled graph)."""

    layers: list[LayerWeights]
    rope: tuple[torch.Tensor, torch.Tensor]  # cos and sin tables by position (rope_tables)
    dims: ModelDims
    attend: Callable[..., torch.Tensor]  # attend(q, k, v, scale, *arguments[, *q_rope])
    q_in_kernel: bool  # attend normalises and rotates the raw q itself
    gate: Callable[..., torch.Tensor] = silu_gate
    pre: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = pre_attention
    post: Callable[..., torch.Tensor] = post_attention


def all_layers(
    x: torch.Tensor,
    positions: torch.Tensor,
    last: torch.Tensor,
    main: tuple[Any, ...],
    final: tuple[Any, ...],
    decoder: Decoder,
) -> torch.Tensor:
    """Every decoder layer, with ``decoder.attend(q, k, v, scale, *main)`` as attention (with
    ``q_in_kernel`` it also gets the layer's q-norm weight, cos, sin and eps, and applies them
    to the raw q). The last layer runs its queries, output projection and MLP on each
    document's last token only (``PackedBatch.final``, whose attention arguments are
    ``final``); returns those rows. On CUDA it is compiled as one graph, so that one batch's
    kernels launch from generated code rather than from Python."""
    dims = decoder.dims
    cos, sin = decoder.rope[0][positions], decoder.rope[1][positions]
    for i, layer in enumerate(decoder.layers):
        q, k, v = decoder.pre(x, cos, sin, layer, dims, not decoder.q_in_kernel)
        args = main
        if i == len(decoder.layers) - 1:  # only each document's last token is read after it
            q, x, args = q[last], x[last], final
        q_rope = (layer.q_norm, cos, sin, dims.eps) if decoder.q_in_kernel else ()
        attn = decoder.attend(q, k, v, dims.scale, *args, *q_rope)
        x = decoder.post(x, attn, layer, dims.eps, decoder.gate)
    return x
