"""The torch engine: what it is built from, in order, and what it decided."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch

from ...errors import ConfigurationError
from ...prompt import EncodedRequest, PromptEncoder
from ...tokenizing import batch_encoder
from ..base import Progress, ScoredDocuments, ScoreRequest, ThreadedEngine
from ..options import options_from
from .budget import configure_allocator, token_budget
from .compat import own_cudagraph_trees
from .graphs import graph_rows
from .layout import pack
from .loading import Checkpoint, check_quantization, load, resolve_device, resolve_dtype
from .model import PackedQwen3
from .options import TorchOptions
from .padded import PaddedForward
from .pipeline import Pipeline

__all__ = ["TorchEngine"]

logger = logging.getLogger("qwen3_rerank.engines.torch")


class TorchEngine(ThreadedEngine):
    """Scores Qwen3-Reranker pairs with PyTorch, on CPU or GPU.

    The default (``fast=True``) runs :class:`~qwen3_rerank.engines.torch.model.PackedQwen3`:
    each query's shared prefix computed once, documents packed with no padding, the yes/no
    head on last tokens only. ``fast=False`` runs transformers' own model on left-padded
    batches: the reference the fast path is tested against. Every choice left to the engine
    is logged (logger ``qwen3_rerank.engines.torch``) and readable from its properties.

    Args:
        model: A Hub id or a local folder of a Qwen3-Reranker checkpoint.
        options: The settings (:class:`~qwen3_rerank.engines.torch.TorchOptions`).
        **kwargs: Fields of :class:`~qwen3_rerank.engines.torch.TorchOptions`, given one by
            one (over ``options`` when both are given).

    Raises:
        ModelLoadError: The model is missing, incomplete or not a Qwen3 reranker.
        ConfigurationError: An option is unknown or bad, or asks for what this machine
            cannot do (FP8 on a GPU without FP8 units, a kernel without Triton, ...).
        MissingDependencyError: torch or transformers is not installed (extra ``[torch]``).

    Example:
        >>> from qwen3_rerank.engines.torch import TorchEngine
        >>> engine = TorchEngine("Qwen/Qwen3-Reranker-0.6B", device="cpu")  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None,
        options: TorchOptions | None = None,
        **kwargs: Any,
    ) -> None:
        self.options = options = _merged(options, kwargs)
        if model is None:
            raise ConfigurationError("a model (Hub id or local folder) is required")
        self.device = resolve_device(options.device)
        self.dtype = resolve_dtype(options.dtype, self.device)
        check_quantization(options, self.dtype, self.device)
        if self.device.type == "cuda" and options.expandable_segments:
            configure_allocator()
        self.model_name = os.fspath(model)
        checkpoint = load(model, options, self.dtype, self.device)
        self.tokenizer = checkpoint.tokenizer
        self.yes_id, self.no_id = checkpoint.yes_id, checkpoint.no_id
        self.encoder = PromptEncoder(batch_encoder(self.tokenizer), options.max_length)
        self.packed = self._packed_model(checkpoint) if options.fast else None
        self._padded = None if options.fast else PaddedForward(checkpoint, self.device)
        del checkpoint  # the transformers model: its weights are copied out
        inline = options.tokenize == "inline" or (options.tokenize == "auto" and self.cuda_graphs)
        logger.info("tokenizing: %s", "inline between launches" if inline else "helper thread")
        self._pipeline = Pipeline(
            self.encoder,
            self.forward,
            max_batch_tokens=self._batch_tokens(),
            packed=self.packed is not None,
            inline=inline,
            dtype=self.dtype,
        )
        super().__init__(self._prepare_graph_thread if self.cuda_graphs else None)

    def _prepare_graph_thread(self) -> None:
        """Readies the engine's thread to record CUDA graphs: inductor's graph trees set up, and
        this thread's cuBLAS handles made now by two small matmuls (mm: cuBLAS, addmm: cuBLASLt).
        A handle can't be made while a graph is recorded, and the compiled code is shared by
        every engine of the process: this thread may record a graph another engine's ran first."""
        own_cudagraph_trees()
        x = torch.ones(8, 8, device=self.device, dtype=self.dtype)
        torch.mm(x, x)
        torch.addmm(x, x, x)
        torch.cuda.synchronize(self.device)

    def _packed_model(self, checkpoint: Checkpoint) -> PackedQwen3:
        options = self.options
        memory_cap = options.memory_cap
        on_cuda = self.device.type == "cuda"
        compile = on_cuda if options.compile is None else options.compile
        if options.cuda_graphs and not (on_cuda and compile):
            raise ConfigurationError("cuda_graphs=True needs device='cuda' and compile")
        graphs = (
            (memory_cap is None and compile) if options.cuda_graphs is None else options.cuda_graphs
        )
        packed = PackedQwen3(
            checkpoint.body,
            checkpoint.direction,
            checkpoint.offset,
            self.device,
            compile=compile,
            cuda_graphs=graphs and on_cuda,
            embed_on_cpu=memory_cap is not None,  # a graph's memory pool stays reserved
            fp8=options.quantization == "fp8",
            max_positions=self.max_length,
            attention=options.attention,
            fused_mlp=options.fused_mlp,
        )
        logger.info(
            "compile: %s; CUDA graphs: %s",
            "on" if compile else "off",
            "on" if packed.replays_graphs else "off",
        )
        return packed

    def _batch_tokens(self) -> int:
        """Tokens per batch: as asked, or sized from memory (:func:`.budget.token_budget`).
        With CUDA graphs, rounded down to a row count the graphs are recorded for, and batches
        of up to the memory-sized budget replay graphs."""
        options = self.options
        packed = self.packed
        if packed is not None:
            per_token, weights = packed.activation_bytes_per_token(), packed.weight_bytes
        else:
            assert self._padded is not None
            per_token, weights = self._padded.activation_bytes_per_token(self.dtype), 0

        def sized(memory_cap: int | None) -> int:
            return token_budget(
                self.device,
                per_token,
                weight_bytes=weights,
                max_length=self.max_length,
                memory_cap=memory_cap,
                activation_memory=options.activation_room,
            )

        if packed is not None and packed.replays_graphs:
            fits = sized(None)
            packed.max_graph_rows = graph_rows(fits)
            return graph_rows(options.max_batch_tokens or fits)
        return options.max_batch_tokens or sized(options.memory_cap)

    @property
    def max_length(self) -> int:
        """Most tokens per pair, template included."""
        return self.encoder.max_length

    @property
    def max_batch_tokens(self) -> int:
        """Tokens per forward pass (halved after a batch runs out of memory)."""
        return self._pipeline.max_batch_tokens

    @property
    def attention(self) -> str:
        """Which attention runs: ``prefix``, ``flash``, ``grouped``, ``loop`` (see
        :attr:`TorchOptions.attention`) or ``padded`` (transformers', ``fast=False``)."""
        return "padded" if self.packed is None else self.packed.attention.name

    @property
    def fused_mlp(self) -> bool:
        """Whether the MLP runs the fused Triton gate kernel."""
        from .layers import silu_gate

        return self.packed is not None and self.packed.gate is not silu_gate

    @property
    def cuda_graphs(self) -> bool:
        """Whether batches replay CUDA graphs."""
        return self.packed is not None and self.packed.replays_graphs

    @property
    def tokenize(self) -> str:
        """``"inline"`` (between launches) or ``"thread"`` (on the helper thread)."""
        return "inline" if self._pipeline.inline else "thread"

    @property
    def embedding_on_host(self) -> bool:
        """Whether the embedding table stays in host memory (under ``max_memory`` on GPU)."""
        return self.packed is not None and self.packed.embed_on_host

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights the fast path holds on the device (0 on the reference path)."""
        return 0 if self.packed is None else self.packed.weight_bytes

    def forward(self, encoded: list[EncodedRequest], pairs: list[tuple[int, int]]) -> torch.Tensor:
        """Runs the model on one batch of ``(request, document)`` pairs: fp32 scores, on the
        device and possibly not computed yet (the pipeline collects them). The one place that
        runs the model."""
        if self.packed is None:
            assert self._padded is not None
            return self._padded([encoded[q].pair_ids(d) for q, d in pairs])
        queries = list(dict.fromkeys(q for q, _ in pairs))
        slot = {q: i for i, q in enumerate(queries)}
        head = self.encoder.prefix_ids  # every query's ids start with the template's
        batch = pack(
            [encoded[q].query_ids[len(head) :] for q in queries],
            [(slot[q], encoded[q].document_ids[d] + encoded[q].suffix_ids) for q, d in pairs],
            head,
            group=self.packed.dims.group,
        )
        return self.packed.score(batch)

    def _score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None
    ) -> list[ScoredDocuments]:
        return self._pipeline.score(requests, progress)

    def _release(self) -> None:
        self._pipeline.close()
        self.packed = None
        self._padded = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _merged(options: TorchOptions | None, kwargs: dict[str, Any]) -> TorchOptions:
    """``options`` with ``kwargs`` over it; a name the engine does not take is refused."""
    given = dataclasses.asdict(options) | kwargs if options is not None else kwargs
    return options_from("torch", TorchOptions, given)
