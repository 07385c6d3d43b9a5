"""The torch engine: transformers' Qwen3 model, scored exactly per the model-card recipe.

Per pair it reads the final hidden state at the last real token and projects it, in fp32, on the
difference of the ``yes`` and ``no`` rows of the LM head: ``sigmoid(h·(w_yes - w_no))``, which is
``softmax([logit_no, logit_yes])[1]`` without ever computing the 151669-row vocabulary.
Sequences are left-padded with explicit position ids, in length-sorted batches bounded by a
token budget; a batch that runs out of GPU memory is split and retried.

``_forward`` is the one place that runs the model, so a faster path can replace it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..batching import PackedPlanner, plan_batches
from ..errors import ConfigurationError, EngineError, MissingDependencyError, ModelLoadError
from ..prompt import DEFAULT_MAX_LENGTH, EncodedRequest, PromptEncoder
from ..tokenizing import batch_encoder
from .base import Progress, ScoredDocuments, ScoreRequest, ThreadedEngine, split_scores

if TYPE_CHECKING:
    import torch as torch_

    from .packed import PackedQwen3

__all__ = ["TorchEngine", "parse_bytes", "resolve_device", "resolve_dtype"]

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
_DEVICE_TYPES = ("cpu", "cuda", "mps")
# Tokens per forward pass when the caller sets no budget (CPU, MPS).
_DEFAULT_BATCH_TOKENS = {"cpu": 8192, "mps": 16384}
# On CUDA without max_memory: activations get at most this much beyond the weights. 512 MiB
# scored as fast as 768 MiB on the H100 and keeps the whole GPU under 2.5 GiB
# (benchmarks/results/probes/memory_by_default_room.json).
_DEFAULT_GPU_ROOM = 512 * 2**20
_BYTE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_BYTE_UNITS |= {p: 2 ** (10 * (i + 1)) for i, u in enumerate("KMGT") for p in (u, u + "IB")}
# Characters per token assumed when cutting requests into pieces to tokenize (English ~4).
_CHARS_PER_TOKEN = 4
# Size of those pieces, in batches' worth of tokens, when a helper thread tokenizes them.
_PIECE_BATCHES = 0.5
# With CUDA graphs: the first piece's size, in batches' worth of characters (it is launched as
# the first batch at once, and caps it). One 100-document query on the H100, 0.125 / 0.25 /
# 0.5 / 1: p50 65.8 / 64.4 / 62.4 / 64.2 ms: smaller first batches run the matmuls less
# efficiently (benchmarks/results/probes/latency_probe_first_piece.json).
_FIRST_BATCH = 0.5
# Kept free under a memory cap for the allocator's rounding and small buffers.
_SLACK_BYTES = 48 * 2**20
# Batches launched and not yet collected. Costs no GPU memory: launched work only reuses the
# allocator's blocks in stream order; the CPU may simply run ahead of the GPU.
_IN_FLIGHT = 3


def _import_torch() -> Any:
    """torch, imported on first use (``import qwen3_rerank`` stays light)."""
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "torch", "torch") from exc
    return torch


def resolve_device(device: Any) -> torch_.device:
    """``None`` -> CUDA if available else CPU; a string or ``torch.device`` is checked."""
    torch = _import_torch()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev: torch_.device = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"unknown device {device!r}; use one of {_DEVICE_TYPES}") from exc
    if dev.type not in _DEVICE_TYPES:
        raise ConfigurationError(f"unsupported device {device!r}; use one of {_DEVICE_TYPES}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} asked for, but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigurationError(
            f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigurationError(f"device {device!r} asked for, but MPS is not available")
    return dev


def resolve_dtype(dtype: Any, device: torch_.device) -> torch_.dtype:
    """``None`` -> float32 on CPU, bfloat16 elsewhere; names or ``torch.dtype`` are checked."""
    torch = _import_torch()
    if dtype is None:
        dtype = "float32" if device.type == "cpu" else "bfloat16"
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        dtype = getattr(torch, _DTYPES[dtype.lower()])
    if dtype in (torch.float32, torch.bfloat16, torch.float16):
        chosen: torch_.dtype = dtype
        return chosen
    raise ConfigurationError(
        f"unsupported dtype {dtype!r}; use 'float32', 'bfloat16', 'float16' or a torch dtype"
    )


def _check_quantization(
    quantization: str | None, fast: bool, dtype: torch_.dtype, device: torch_.device
) -> None:
    if quantization is None:
        return
    if quantization != "fp8":
        raise ConfigurationError(f"unknown quantization {quantization!r}; use 'fp8' or None")
    torch = _import_torch()
    if not fast or dtype != torch.bfloat16:
        raise ConfigurationError("quantization='fp8' needs fast=True and dtype='bfloat16'")
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        raise ConfigurationError(
            f"quantization='fp8' needs a GPU with FP8 units (compute capability 8.9+); "
            f"{torch.cuda.get_device_name(device)} has none"
        )


class TorchEngine(ThreadedEngine):
    """Scores Qwen3-Reranker pairs with PyTorch, on CPU or GPU.

    The default (``fast=True``) runs :class:`~qwen3_rerank.engines.packed.PackedQwen3`: each
    query's shared prefix computed once, documents packed with no padding, attention by the
    ragged attention kernels on GPU, the yes/no head on last tokens only. ``fast=False`` runs
    transformers' own model on left-padded batches: the reference the fast path is tested against.
    On GPU, attention runs in our Triton kernel (:mod:`.prefix_attention`), else in the
    FlashAttention varlen kernel that PyTorch ships, whichever first agrees with a per-sequence
    SDPA reference at start-up.

    Args:
        model: A Hub id or a local folder of a Qwen3-Reranker checkpoint.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``None`` for CUDA when available.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch dtype; ``None`` picks
            float32 on CPU and bfloat16 on GPU. Scores are always computed in fp32.
        max_length: Most tokens per pair; longer documents are truncated.
        max_batch_tokens: Tokens per forward pass; by default sized from ``max_memory`` (or
            free GPU memory) on GPU, 8192 on CPU.
        max_memory: Cap on the memory the engine allocates on the device, weights included
            (``"1.5GiB"``, ``"800MB"`` or bytes). Batches are sized to stay under it.
        fast: Use the packed prefix-sharing forward (default) or transformers' model.
        compile: Compile the fast path with ``torch.compile``; ``None`` (default) compiles on
            CUDA (all layers as one graph; the first calls take tens of seconds longer). On
            CUDA without ``max_memory``, batches replay CUDA graphs, one per batch shape (rows
            padded to eight sizes per power of two; the token budget is rounded down to one of
            them), so launching a batch costs the CPU little (a one-document request took
            4.8 ms instead of 11.3 on the H100).
        quantization: ``"fp8"`` runs the projections in FP8 (weights per output row, activations
            per token; ``torch._scaled_mm``): faster matmuls and half the weight memory on GPUs
            with FP8 units (compute capability 8.9+: Ada, Hopper), scores a little less exact.
            Needs ``fast=True`` and bfloat16; on CPU it runs, slowly (for tests).
        **load_options: Passed to both ``from_pretrained`` calls (``revision``, ``cache_dir``,
            ``local_files_only``, ``token``, ...).

    Raises:
        ModelLoadError: The model is missing, incomplete or not a Qwen3 reranker.
        ConfigurationError: Bad device, dtype, max_length, max_batch_tokens, max_memory or
            quantization (or FP8 asked of a GPU without FP8 units).
        MissingDependencyError: torch or transformers is not installed (extra ``[torch]``).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: Any = None,
        dtype: Any = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_batch_tokens: int | None = None,
        max_memory: int | str | None = None,
        fast: bool = True,
        compile: bool | None = None,
        quantization: str | None = None,
        **load_options: Any,
    ) -> None:
        torch = _import_torch()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        _check_quantization(quantization, fast, self.dtype, self.device)
        if self.device.type == "cuda":
            _expandable_segments(torch)
        memory_cap = None if max_memory is None else parse_bytes(max_memory)
        if max_batch_tokens is not None and (
            isinstance(max_batch_tokens, bool)
            or not isinstance(max_batch_tokens, int)
            or max_batch_tokens < 1
        ):
            raise ConfigurationError(
                f"max_batch_tokens must be a positive integer, got {max_batch_tokens!r}"
            )
        self.model_name = os.fspath(model)

        self.tokenizer = _load_tokenizer(self.model_name, load_options)
        self.encoder = PromptEncoder(batch_encoder(self.tokenizer), max_length)
        self.yes_id, self.no_id = _yes_no_ids(self.tokenizer, self.model_name)
        self._pad_id = _pad_id(self.tokenizer)

        causal_lm = _load_model(self.model_name, self.dtype, load_options)
        head = causal_lm.get_output_embeddings()
        if head is None or head.weight.shape[0] <= max(self.yes_id, self.no_id):
            raise ModelLoadError(f"{self.model_name!r} has no LM head covering the yes/no tokens")
        with torch.no_grad():
            weight = head.weight.float()
            # softmax([no, yes])[1] == sigmoid(logit_yes - logit_no): one direction suffices.
            self._direction = (weight[self.yes_id] - weight[self.no_id]).to(self.device)
            bias = getattr(head, "bias", None)
            self._offset = float(bias[self.yes_id] - bias[self.no_id]) if bias is not None else 0.0
        body = causal_lm.base_model.eval()
        del causal_lm, head, weight
        self._packed: PackedQwen3 | None = None
        if fast:
            from .packed import PackedQwen3

            self._packed = PackedQwen3(
                body,
                self._direction,
                self._offset,
                self.device,
                compile=self.device.type == "cuda" if compile is None else compile,
                # a graph's memory pool stays reserved: not under a memory cap
                cuda_graphs=memory_cap is None,
                embed_on_cpu=memory_cap is not None,
                fp8=quantization == "fp8",
                max_positions=self.max_length,
            )
            self._packed.choose_attention()
            self._packed.choose_gate()
            del body
        else:
            self._body = body.to(self.device)
        # batches replay CUDA graphs (no memory cap then): see _packed_batches
        self._tokenize_inline = self._packed is not None and self._packed.replays_graphs
        if self._packed is not None and self._tokenize_inline:
            from .packed import graph_rows

            sized = self._token_budget(None)
            self._packed.max_graph_rows = graph_rows(sized)
            self.max_batch_tokens = graph_rows(max_batch_tokens or sized)
        else:
            self.max_batch_tokens = max_batch_tokens or self._token_budget(memory_cap)
        self._tokenizing = ThreadPoolExecutor(1, thread_name_prefix="qwen3-rerank-tokenize")
        super().__init__()

    @property
    def max_length(self) -> int:
        """Most tokens per pair, template included."""
        return self.encoder.max_length

    @property
    def attention(self) -> str:
        """Which attention runs: ``prefix`` (our Triton kernel, GPU), ``flash`` (PyTorch's
        FlashAttention varlen kernel, GPU without Triton), ``grouped`` (padded SDPA over
        length-sorted groups, CPU), ``loop`` (SDPA per sequence) or ``padded`` (transformers')."""
        if self._packed is None:
            return "padded"
        return self._packed.attention.__name__.removeprefix("attention_")

    def _token_budget(self, memory_cap: int | None) -> int:
        """Tokens per forward pass that fit the memory cap (or the default share on GPU)."""
        torch = _import_torch()
        if memory_cap is None and self.device.type != "cuda":
            return _DEFAULT_BATCH_TOKENS[self.device.type]
        config = self._body.config if self._packed is None else None
        per_token = (
            self._packed.activation_bytes_per_token()
            if self._packed is not None
            else 4 * _activation_bytes_per_token(config, self.dtype)  # padded, full attention
        )
        if self.device.type == "cuda":
            used = torch.cuda.memory_allocated(self.device)
            free, _ = torch.cuda.mem_get_info(self.device)
        else:
            used = self._packed.weight_bytes if self._packed is not None else 0
            free = memory_cap or 0
        room = (memory_cap - used) if memory_cap is not None else min(free, _DEFAULT_GPU_ROOM)
        budget = int(room - _SLACK_BYTES) // per_token
        if memory_cap is not None and budget < self.max_length:
            raise ConfigurationError(
                f"max_memory={memory_cap / 2**30:.2f}GiB leaves room for {max(budget, 0)} tokens "
                f"per batch after {used / 2**30:.2f}GiB of weights, fewer than "
                f"max_length={self.max_length}: raise max_memory or lower max_length"
            )
        return max(budget, self.max_length)

    def _score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None
    ) -> list[ScoredDocuments]:
        pairs = [(q, d) for q, r in enumerate(requests) for d in range(len(r.documents))]
        flat = [0.0] * len(pairs)
        encoded: list[EncodedRequest] = []  # filled in by the batch generator as it goes
        plan = self._packed_batches if self._packed is not None else self._padded_batches
        # Up to _IN_FLIGHT batches are launched before the oldest one's scores are waited for,
        # so the GPU always has queued work while the CPU tokenizes, packs and launches.
        pending: deque[tuple[list[int], torch_.Tensor, Any]] = deque()
        for batch in plan(requests, encoded):
            scores = self._run(encoded, [pairs[i] for i in batch])
            pending.append((batch, *self._to_host(scores)))
            if len(pending) > _IN_FLIGHT:
                self._collect(*pending.popleft(), flat, progress)
        while pending:
            self._collect(*pending.popleft(), flat, progress)
        return split_scores(flat, [e.truncated for e in encoded])

    def _to_host(self, scores: torch_.Tensor) -> tuple[torch_.Tensor, Any]:
        """Starts copying one batch's scores to the host and marks when they are there.

        Waiting on the batch's own event, not on a blocking ``.cpu()``: a blocking copy is
        queued behind every batch launched since, so waiting for batch 1 also waited for batch
        2, and the CPU launched batch 3 only once the GPU had run dry (one 100-document query
        on the H100: 90 ms before, 83 ms after; benchmarks/results/probes/latency_probe_timeline
        and _in_flight.json).
        """
        if scores.device.type != "cuda":
            return scores, None
        torch = _import_torch()
        host = scores.to("cpu", non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()
        return host, copied

    def _padded_batches(
        self, requests: Sequence[ScoreRequest], encoded: list[EncodedRequest]
    ) -> Iterator[list[int]]:
        """Length-sorted batches for the padded path, once every request is tokenized."""
        encoded.extend(self.encoder.encode(r.query, r.documents, r.instruction) for r in requests)
        lengths = [e.pair_length(d) for e in encoded for d in range(len(e.document_ids))]
        yield from plan_batches(lengths, self.max_batch_tokens, padded=True)

    def _packed_batches(
        self, requests: Sequence[ScoreRequest], encoded: list[EncodedRequest]
    ) -> Iterator[list[int]]:
        """Packed batches in input order, each yielded as soon as its documents are tokenized.

        Requests are tokenized in pieces, so the GPU starts on the first batch while the rest
        is tokenized: tokenizing one 100-document query took 6-16 ms on the H100 hosts. When
        batches replay CUDA graphs, ``score`` costs the CPU ~2-3.5 ms a batch, so the pieces are
        tokenized here between launches: a first piece of about half the budget, which is
        launched as the first batch at once, then a batch's worth at a time (smaller pieces
        cost ~1.5 ms of tokenizer call each). One query then took 62.4 ms against 69.2 with
        the helper thread (one host), whose tokenizing competes with the launches for the GIL.
        Without graphs, launching takes ~8 ms of CPU per batch, and the helper thread
        tokenizes meanwhile (benchmarks/results/probes/).
        """

        def encode(r: int, start: int, end: int) -> EncodedRequest:
            request = requests[r]
            return self.encoder.encode(
                request.query, request.documents[start:end], request.instruction
            )

        chars = self.max_batch_tokens * _CHARS_PER_TOKEN
        futures: list[Future[EncodedRequest]] = []
        if self._tokenize_inline:  # the first batch's worth, then a batch's worth at a time
            pieces = _pieces(requests, int(chars * _FIRST_BATCH), int(chars))
            parts: Iterator[EncodedRequest] = (encode(*piece) for piece in pieces)
            first = int(self.max_batch_tokens * _FIRST_BATCH)
            planner = PackedPlanner(self.max_batch_tokens, first)
        else:
            pieces = _pieces(requests, int(chars * _PIECE_BATCHES))
            futures = [self._tokenizing.submit(encode, *piece) for piece in pieces]
            parts = (future.result() for future in futures)
            planner = PackedPlanner(self.max_batch_tokens)
        item, launched = 0, False
        try:
            for (r, start, _), part in zip(pieces, parts, strict=True):
                if start == 0:
                    encoded.append(EncodedRequest(part.query_ids, [], part.suffix_ids, []))
                encoded[r].document_ids.extend(part.document_ids)
                encoded[r].truncated.extend(part.truncated)
                for ids in part.document_ids:
                    length = len(ids) + len(part.suffix_ids)
                    closed = planner.add(item, r, length, len(part.query_ids))
                    item += 1
                    if closed is not None:
                        launched = True
                        yield closed
                if self._tokenize_inline and not launched:
                    # the first piece is the first batch, whatever its token count: the
                    # characters per token are only guessed, and waiting for the next piece
                    # to fill it kept the GPU idle for that piece's tokenizing
                    launched = True
                    closed = planner.finish()
                    if closed is not None:
                        yield closed
            last = planner.finish()
            if last is not None:
                yield last
        finally:
            for future in futures:
                future.cancel()

    def _collect(
        self,
        batch: list[int],
        values: torch_.Tensor,
        copied: Any,
        flat: list[float],
        progress: Progress | None,
    ) -> None:
        """Waits for one batch's scores (on the host once ``copied`` is reached) and puts them
        in place."""
        torch = _import_torch()
        if copied is not None:
            copied.synchronize()
        if not torch.isfinite(values).all():
            raise EngineError(
                f"the model produced non-finite scores in {self.dtype}; try dtype='float32'"
            )
        for i, s in zip(batch, values.tolist(), strict=True):
            flat[i] = s
        if progress is not None:
            progress(len(batch))

    def _run(self, encoded: list[EncodedRequest], pairs: list[tuple[int, int]]) -> torch_.Tensor:
        """Launches one batch; on out-of-memory, runs its halves and plans smaller batches.

        The retry happens after the ``except`` block: the exception's traceback holds the
        failed attempt's activations, and retrying inside it would run out of memory again.
        """
        torch = _import_torch()
        try:
            return self._forward(encoded, pairs)
        except torch.OutOfMemoryError as exc:
            if len(pairs) == 1:
                q, d = pairs[0]
                raise EngineError(
                    f"out of memory on a single {encoded[q].pair_length(d)}-token pair; "
                    "lower max_length or free GPU memory"
                ) from exc
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.max_batch_tokens = max(1, self.max_batch_tokens // 2)
        half = len(pairs) // 2
        halves = (self._run(encoded, pairs[:half]), self._run(encoded, pairs[half:]))
        scores: torch_.Tensor = torch.cat(halves)
        return scores

    def _forward(
        self, encoded: list[EncodedRequest], pairs: list[tuple[int, int]]
    ) -> torch_.Tensor:
        """Runs the model on one batch of (request, document) pairs: fp32 scores, on the
        device and possibly not computed yet (the caller collects them)."""
        if self._packed is not None:
            from .packed import pack

            queries = list(dict.fromkeys(q for q, _ in pairs))
            slot = {q: i for i, q in enumerate(queries)}
            head = self.encoder.prefix_ids  # every query's ids start with the template's
            batch = pack(
                [encoded[q].query_ids[len(head) :] for q in queries],
                [(slot[q], encoded[q].document_ids[d] + encoded[q].suffix_ids) for q, d in pairs],
                head,
            )
            return self._packed.score(batch)
        return self._forward_padded([encoded[q].pair_ids(d) for q, d in pairs])

    def _forward_padded(self, ids: list[list[int]]) -> torch_.Tensor:
        """transformers' model on a left-padded batch: the reference path."""
        torch = _import_torch()
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):  # left padding: the last column is every row's last token
            input_ids[row, width - len(x) :] = torch.tensor(x, dtype=torch.long)
            mask[row, width - len(x) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            hidden = self._body(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=False,
            ).last_hidden_state[:, -1, :]
            logits = hidden.float() @ self._direction + self._offset
            scores: torch_.Tensor = torch.sigmoid(logits).cpu()
            return scores

    def _release(self) -> None:
        torch = _import_torch()
        self._tokenizing.shutdown(wait=False)
        self._packed = None
        self.__dict__.pop("_body", None)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _pieces(
    requests: Sequence[ScoreRequest], first_chars: int, chars: int | None = None
) -> list[tuple[int, int, int]]:
    """``(request, first document, end)`` slices of documents, in order: the first of about
    ``first_chars`` characters, the others of about ``chars`` (default: the same). Every
    request gets at least one (an empty one for a request of no documents)."""
    pieces: list[tuple[int, int, int]] = []
    later = chars or first_chars
    for r, request in enumerate(requests):
        start, size = 0, 0
        for d, document in enumerate(request.documents):
            size += len(document)
            if size >= (later if pieces else first_chars):
                pieces.append((r, start, d + 1))
                start, size = d + 1, 0
        if start < len(request.documents) or start == 0:
            pieces.append((r, start, len(request.documents)))
    return pieces


def _expandable_segments(torch: Any) -> None:
    """Lets the CUDA caching allocator grow segments in place, unless the user configured it.

    Batches of every size leave the default allocator with freed blocks it cannot reuse; on
    the H100 that held 0.24 GiB more than expandable segments do at the same peak allocation
    (benchmarks/results/probes/memory_*.json)."""
    if os.environ.get("PYTORCH_CUDA_ALLOC_CONF") or os.environ.get("PYTORCH_ALLOC_CONF"):
        return
    setter = getattr(torch._C, "_accelerator_setAllocatorSettings", None)  # torch >= 2.9
    if setter is None:
        setter = getattr(torch.cuda.memory, "_set_allocator_settings", None)
    if setter is not None:
        with contextlib.suppress(RuntimeError):  # a platform without it
            setter("expandable_segments:True")


def parse_bytes(value: int | str) -> int:
    """``"1.5GiB"``, ``"800MB"``, ``"2G"`` (G = GiB) or an int of bytes -> bytes."""
    match = None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif match is not None and match.group(2).upper() in _BYTE_UNITS:
        size = int(float(match.group(1)) * _BYTE_UNITS[match.group(2).upper()])
    else:
        raise ConfigurationError(f"max_memory must be bytes or a size like '1.5GiB', got {value!r}")
    if size <= 0:
        raise ConfigurationError(f"max_memory must be positive, got {value!r}")
    return size


def _activation_bytes_per_token(config: Any, dtype: torch_.dtype) -> int:
    """Rough transient bytes per token of one decoder layer (for the padded path)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    qkv = (heads + 2 * config.num_key_value_heads) * head_dim
    size = 4 if str(dtype).endswith("float32") else 2
    return int(size * (4 * config.hidden_size + 2 * qkv + 4 * config.intermediate_size))


def _load_tokenizer(name: str, options: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    if _looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"no such model folder: {name!r}")
        if not (folder / "config.json").is_file():
            raise ModelLoadError(f"{name!r} is not a model folder: it has no config.json")
    try:
        return AutoTokenizer.from_pretrained(name, **options)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {name!r}: {_one_line(exc)}") from exc


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else path-like is a local folder."""
    return (
        Path(name).exists()
        or name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def _load_model(name: str, dtype: torch_.dtype, options: dict[str, Any]) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype, attn_implementation="sdpa", **options
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot load a causal LM from {name!r}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """transformers' errors span many lines; a CLI error must fit on one."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _yes_no_ids(tokenizer: Any, name: str) -> tuple[int, int]:
    """The ids of ``yes`` and ``no``, which must each be one token, as in Qwen3's vocabulary."""
    ids = []
    for token in ("yes", "no", "<|im_start|>", "<|im_end|>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(tid, int) or tid == tokenizer.unk_token_id:
            raise ModelLoadError(
                f"{name!r} is not a Qwen3 reranker: its tokenizer has no single token {token!r}"
            )
        ids.append(tid)
    return ids[0], ids[1]


def _pad_id(tokenizer: Any) -> int:
    """Any id works for padding (it is masked out); Qwen's is <|endoftext|>."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(tid, int):
            return tid
    return 0
