"""A Qwen3 forward pass built for reranking: packed, prefix-sharing, last-token-only.

Three facts of reranking shape it (docs/how-it-works.md tells the whole design):

- Every document of a query shares the template prefix, the instruction and the query. That
  shared part is computed once per batch (:mod:`.layout`), and each document attends to its
  keys and values.
- Nothing is decoded, so no KV cache is kept: the sequences of a batch are packed end to end
  with no padding, and one variable-length attention call per layer serves them all
  (:mod:`.attention`).
- Only the last token of each document is read: the last layer computes keys and values for
  every row but its queries, output projection and MLP for those rows alone, and the final
  norm and the two-row yes/no head run on them.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from . import graphs
from .attention import PREFIX, AttentionBackend, eager_attend, select
from .compat import mark_static_address, reset_cudagraph_trees
from .layers import (
    Decoder,
    LayerWeights,
    ModelDims,
    Weight,
    all_layers,
    post_attention,
    pre_attention,
    quantize_fp8,
    rms_norm,
    rope_tables,
)
from .layout import PackedBatch
from .mlp import select_gate
from .transfer import moved, on_device

__all__ = ["PackedQwen3"]

logger = logging.getLogger("qwen3_rerank.engines.torch")


class PackedQwen3:
    """Qwen3 decoder weights laid out for packed reranking, with a yes/no scoring head.

    Args:
        body: The transformers ``Qwen3Model`` (weights are copied out; it can be freed).
        direction: ``w_yes - w_no`` of the LM head, fp32.
        offset: ``b_yes - b_no`` (0 for Qwen3).
        device: Where to run.
        compile: Fuse the per-token work with ``torch.compile``.
        cuda_graphs: Replay each batch of at most ``max_graph_rows`` rows as a CUDA graph
            (with ``compile``, on CUDA, with the prefix kernel).
        embed_on_cpu: Keep the embedding table in host memory; each batch's rows are
            gathered on the CPU and copied over.
        fp8: Hold the projection weights in FP8 with per-row scales (needs bf16).
        max_positions: Positions the RoPE tables cover (default: the model's
            ``max_position_embeddings``; the engine passes its ``max_length``).
        attention: A name of :data:`.attention.BACKENDS` or ``"auto"``.
        fused_mlp: Use the fused MLP kernel; ``None``: where it runs, pays and agrees
            (:func:`.mlp.select_gate`).
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
        attention: str = "auto",
        fused_mlp: bool | None = None,
    ) -> None:
        config = body.config
        self.device = device
        self.dtype: torch.dtype = body.embed_tokens.weight.dtype
        heads = int(config.num_attention_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        self.dims = ModelDims(
            heads=heads,
            kv_heads=int(config.num_key_value_heads),
            head_dim=head_dim,
            eps=float(config.rms_norm_eps),
            scale=head_dim**-0.5,
        )
        self.intermediate = int(config.intermediate_size)
        self.fp8 = fp8
        embed = body.embed_tokens.weight.detach().to(self.dtype).contiguous()
        self.embed_on_host = embed_on_cpu and device.type == "cuda"
        self.embed = embed.pin_memory() if self.embed_on_host else self._put(embed)
        self.layers = [self._layer(layer) for layer in body.layers]
        self.norm = self._put(body.norm.weight)
        rotary = body.rotary_emb
        self.rope = rope_tables(
            torch.arange(max_positions or int(config.max_position_embeddings), device=device),
            rotary.inv_freq.detach().float().to(device),
            float(getattr(rotary, "attention_scaling", 1.0)),
            self.dtype,
        )
        self.direction = direction.to(device)
        self.offset = offset
        self.attention: AttentionBackend = select(attention, device, self.dtype, self.dims)
        self.gate = select_gate(fused_mlp, self.layers[0].gate_up, device, self.dtype)
        self._pre: Any = pre_attention
        self._post: Any = post_attention
        self._all_layers: Any = all_layers
        if compile:
            self._pre = graphs.compile_for_tokens(pre_attention, token_args=3)
            self._post = graphs.compile_for_tokens(post_attention, token_args=2)
            self._all_layers = graphs.compile_for_tokens(all_layers, token_args=5)
        self._graphed: Any = None
        # Batches of more rows run without graphs (the engine sets it to its memory-sized
        # budget: a graph's memory stays reserved in its pool, and a larger batch runs long
        # enough on the GPU to hide its launch).
        self.max_graph_rows = 2**62
        if compile and cuda_graphs and device.type == "cuda" and self.attention is PREFIX:
            for t in (*self._layer_tensors(), *self.rope):  # read in place, never copied in
                mark_static_address(t)
            self._graphed = graphs.compile_for_tokens(
                all_layers, token_args=5, mode="reduce-overhead"
            )

    def _put(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device=self.device, dtype=self.dtype).contiguous()

    def _project(self, *parts: torch.Tensor) -> Weight:
        weight = torch.cat([p.detach() for p in parts]) if len(parts) > 1 else parts[0]
        if not self.fp8:
            return self._put(weight)
        quantized = quantize_fp8(weight)
        return type(quantized)(quantized.values.to(self.device), quantized.scale.to(self.device))

    def _layer(self, layer: Any) -> LayerWeights:
        a, m = layer.self_attn, layer.mlp
        return LayerWeights(
            input_norm=self._put(layer.input_layernorm.weight),
            qkv=self._project(a.q_proj.weight, a.k_proj.weight, a.v_proj.weight),
            q_norm=self._put(a.q_norm.weight),
            k_norm=self._put(a.k_norm.weight),
            o=self._project(a.o_proj.weight),
            post_norm=self._put(layer.post_attention_layernorm.weight),
            gate_up=self._project(m.gate_proj.weight, m.up_proj.weight),
            down=self._project(m.down_proj.weight),
        )

    def _layer_tensors(self) -> list[torch.Tensor]:
        """Every tensor of the decoder layers (an FP8 weight is two: values and scales)."""
        return [
            t for layer in self.layers for w in layer for t in (w if isinstance(w, tuple) else (w,))
        ]

    @property
    def replays_graphs(self) -> bool:
        """Whether batches (of at most ``max_graph_rows`` rows) replay CUDA graphs."""
        return self._graphed is not None

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights held on the device."""
        tensors = [self.norm, *self.rope, *self._layer_tensors()]
        if not self.embed_on_host:
            tensors.append(self.embed)
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def activation_bytes_per_token(self) -> int:
        """Upper estimate of transient memory per packed token, for sizing batches: residual,
        norm out and attention out, q/k/v (raw and rotated), gate/up/act, and the keys and
        values gathered per sequence (not by the prefix kernel, which reads them in place)."""
        heads, kv_heads, head_dim = self.dims.heads, self.dims.kv_heads, self.dims.head_dim
        hidden = int(self.embed.shape[1])
        qkv = (heads + 2 * kv_heads) * head_dim
        gathered = 4 * kv_heads * head_dim if self.attention.gathers_keys else 0
        return self.embed.element_size() * (4 * hidden + 2 * qkv + gathered + 4 * self.intermediate)

    def _decoder(self, attend: Any, q_in_kernel: bool, compiled_parts: bool = False) -> Decoder:
        return Decoder(
            layers=self.layers,
            rope=self.rope,
            dims=self.dims,
            attend=attend,
            q_in_kernel=q_in_kernel,
            gate=self.gate,
            pre=self._pre if compiled_parts else pre_attention,
            post=self._post if compiled_parts else post_attention,
        )

    def _embedded(self, host_tokens: torch.Tensor, tokens: torch.Tensor, rows: int) -> torch.Tensor:
        """The embedding rows of a batch's tokens, ``rows`` of them (padding rows: zeros when
        gathered on the host, else the embedding of token 0). On the host, ``index_select``
        gathers straight into a pinned buffer, copied in one go."""
        if self.embed_on_host:
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
        """fp32 P(yes) of each document of a packed batch built on the CPU by :func:`.pack`."""
        if batch.max_k > len(self.rope[0]):  # the longest sequence's keys: its last position + 1
            raise ValueError(
                f"position {batch.max_k - 1} is past the RoPE tables' {len(self.rope[0])}: "
                "raise max_positions"
            )
        backend = self.attention
        if backend.kernel is None:  # layer by layer: an attention that is not a kernel
            x = self._eager(batch)
        elif self.replays_graphs and len(batch.tokens) <= self.max_graph_rows:
            x = self._replayed(batch)
        else:
            on = on_device(batch, self.device)
            x = self._all_layers(
                self._embedded(batch.tokens, on.tokens, len(batch.tokens)),
                on.positions,
                on.last,
                backend.kernel_args(on),
                backend.kernel_args(on.final()),
                self._decoder(backend.kernel, backend.q_in_kernel),
            )
        last = rms_norm(x, self.norm, self.dims.eps)  # the last layer kept only these rows
        return torch.sigmoid(last.float() @ self.direction + self.offset)

    def _eager(self, batch: PackedBatch) -> torch.Tensor:
        on = on_device(batch, self.device)
        return all_layers(
            self._embedded(batch.tokens, on.tokens, len(batch.tokens)),
            on.positions,
            on.last,
            (self.attention, on),
            (self.attention, on.final()),
            self._decoder(eager_attend, False, compiled_parts=True),
        )

    def _replayed(self, batch: PackedBatch) -> torch.Tensor:
        """One batch as a CUDA graph. Graphs have fixed shapes: rows, tiles and documents are
        padded on the host up to a few sizes (padding rows and tiles compute nothing that is
        read) and copied in one go, so that little but the replay is launched."""
        n = len(batch.last)
        rows, docs = graphs.bucket(len(batch.tokens), graphs.ROW_SIZES), graphs.bucket(n)
        tokens, positions, last, tiles, final_tiles = moved(
            (batch.tokens, batch.positions, batch.last, batch.tiles, batch.final_tiles),
            self.device,
            (rows, rows, docs, graphs.bucket(len(batch.tiles)), docs),
        )
        prefix = PREFIX
        try:
            x: torch.Tensor = self._graphed(
                self._embedded(batch.tokens, tokens, rows),
                positions,
                last,
                prefix.kernel_args(batch, tiles),
                prefix.kernel_args(batch.final(), final_tiles),
                self._decoder(prefix.kernel, prefix.q_in_kernel),
            )
        except torch.OutOfMemoryError:
            # Out of memory while recording a graph breaks cudagraph trees' state for every
            # engine in the process: start them afresh and go on without graphs (the caller
            # retries smaller).
            self._graphed = None
            reset_cudagraph_trees()
            logger.warning("CUDA graphs: off after running out of memory while recording one")
            raise
        return x[:n]
