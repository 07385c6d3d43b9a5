"""One call's way through the engine: tokenize, plan batches, launch, collect, split on OOM.

Requests are tokenized in pieces so that the device starts on the first batch while the rest
is tokenized: either inline between launches (when launching costs the CPU little, as with
CUDA graphs; the first piece is smaller and launched as the first batch at once) or on a
helper thread while batches run. Up to :data:`IN_FLIGHT` batches are launched before the
oldest one's scores are waited for, so the device always has queued work.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from ...batching import PackedPlanner, plan_batches
from ...errors import EngineError
from ...prompt import EncodedRequest, PromptEncoder
from ..base import Progress, ScoredDocuments, ScoreRequest, split_scores

__all__ = ["CHARS_PER_TOKEN", "FIRST_BATCH", "IN_FLIGHT", "Pipeline", "pieces"]

CHARS_PER_TOKEN = 4  # assumed when cutting requests into pieces to tokenize (English ~4)
PIECE_BATCHES = 0.5  # a piece tokenized by the helper thread, in batches' worth of tokens
FIRST_BATCH = 0.5  # inline: the first piece (launched as the first batch), in batches' worth
IN_FLIGHT = 3  # batches launched and not yet collected (costs no device memory)

Forward = Callable[[list[EncodedRequest], list[tuple[int, int]]], torch.Tensor]


def pieces(
    requests: Sequence[ScoreRequest], first_chars: int, chars: int | None = None
) -> list[tuple[int, int, int]]:
    """``(request, first document, end)`` slices of documents, in order: the first of about
    ``first_chars`` characters, the others of about ``chars`` (default: the same). Every
    request gets at least one (an empty one for a request of no documents)."""
    out: list[tuple[int, int, int]] = []
    later = chars or first_chars
    for r, request in enumerate(requests):
        start, size = 0, 0
        for d, document in enumerate(request.documents):
            size += len(document)
            if size >= (later if out else first_chars):
                out.append((r, start, d + 1))
                start, size = d + 1, 0
        if start < len(request.documents) or start == 0:
            out.append((r, start, len(request.documents)))
    return out


class Pipeline:
    """Scores requests through ``forward``, one token-budget batch at a time.

    Args:
        encoder: Tokenizes requests.
        forward: Runs the model on one batch of ``(request, document)`` pairs: fp32 scores,
            possibly still being computed on the device.
        max_batch_tokens: Tokens per batch (halved for later calls after an out-of-memory).
        packed: Plan packed batches in input order (the fast path); else length-sorted padded
            batches, once every request is tokenized.
        inline: Tokenize between launches rather than on the helper thread.
        dtype: Named in the error when scores are not finite.
    """

    def __init__(
        self,
        encoder: PromptEncoder,
        forward: Forward,
        *,
        max_batch_tokens: int,
        packed: bool,
        inline: bool,
        dtype: torch.dtype,
    ) -> None:
        self.encoder = encoder
        self.forward = forward
        self.max_batch_tokens = max_batch_tokens
        self.packed = packed
        self.inline = inline
        self.dtype = dtype
        self._tokenizing = ThreadPoolExecutor(1, thread_name_prefix="qwen3-rerank-tokenize")

    def close(self) -> None:
        self._tokenizing.shutdown(wait=False)

    def score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None
    ) -> list[ScoredDocuments]:
        pairs = [(q, d) for q, r in enumerate(requests) for d in range(len(r.documents))]
        flat = [0.0] * len(pairs)
        encoded: list[EncodedRequest] = []  # filled in by the batch generator as it goes
        plan = self._packed_batches if self.packed else self._padded_batches
        pending: deque[tuple[list[int], torch.Tensor, Any]] = deque()
        for batch in plan(requests, encoded):
            scores = self._run(encoded, [pairs[i] for i in batch])
            pending.append((batch, *_to_host(scores)))
            if len(pending) > IN_FLIGHT:
                self._collect(*pending.popleft(), flat, progress)
        while pending:
            self._collect(*pending.popleft(), flat, progress)
        return split_scores(flat, [e.truncated for e in encoded])

    def _padded_batches(
        self, requests: Sequence[ScoreRequest], encoded: list[EncodedRequest]
    ) -> Iterator[list[int]]:
        encoded.extend(self.encoder.encode(r.query, r.documents, r.instruction) for r in requests)
        lengths = [e.pair_length(d) for e in encoded for d in range(len(e.document_ids))]
        yield from plan_batches(lengths, self.max_batch_tokens, padded=True)

    def _packed_batches(
        self, requests: Sequence[ScoreRequest], encoded: list[EncodedRequest]
    ) -> Iterator[list[int]]:
        """Packed batches in input order, each yielded as soon as its documents are
        tokenized."""

        def encode(r: int, start: int, end: int) -> EncodedRequest:
            request = requests[r]
            return self.encoder.encode(
                request.query, request.documents[start:end], request.instruction
            )

        chars = self.max_batch_tokens * CHARS_PER_TOKEN
        futures: list[Future[EncodedRequest]] = []
        if self.inline:  # the first batch's worth, then a batch's worth at a time
            cuts = pieces(requests, int(chars * FIRST_BATCH), int(chars))
            parts: Iterator[EncodedRequest] = (encode(*piece) for piece in cuts)
            planner = PackedPlanner(self.max_batch_tokens, int(self.max_batch_tokens * FIRST_BATCH))
        else:
            cuts = pieces(requests, int(chars * PIECE_BATCHES))
            futures = [self._tokenizing.submit(encode, *piece) for piece in cuts]
            parts = (future.result() for future in futures)
            planner = PackedPlanner(self.max_batch_tokens)
        item, launched = 0, False
        try:
            for (r, start, _), part in zip(cuts, parts, strict=True):
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
                if self.inline and not launched:
                    # the first piece is the first batch, whatever its token count: the
                    # characters per token are only guessed, and waiting for the next piece
                    # to fill it would keep the device idle for that piece's tokenizing
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

    def _run(self, encoded: list[EncodedRequest], pairs: list[tuple[int, int]]) -> torch.Tensor:
        """Launches one batch; on out-of-memory, runs its halves and plans smaller batches.

        The retry happens after the ``except`` block: the exception's traceback holds the
        failed attempt's activations, and retrying inside it would run out of memory again.
        """
        try:
            return self.forward(encoded, pairs)
        except torch.OutOfMemoryError as exc:
            if len(pairs) == 1:
                q, d = pairs[0]
                raise EngineError(
                    f"out of memory on a single {encoded[q].pair_length(d)}-token pair; "
                    "lower max_length or free GPU memory"
                ) from exc
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.max_batch_tokens = max(1, self.max_batch_tokens // 2)
        half = len(pairs) // 2
        halves = (self._run(encoded, pairs[:half]), self._run(encoded, pairs[half:]))
        return torch.cat(halves)

    def _collect(
        self,
        batch: list[int],
        values: torch.Tensor,
        copied: Any,
        flat: list[float],
        progress: Progress | None,
    ) -> None:
        """Waits for one batch's scores (on the host once ``copied`` is reached) and puts them
        in place."""
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


def _to_host(scores: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """Starts copying one batch's scores to the host and marks when they are there. Waiting on
    the batch's own event, not on a blocking ``.cpu()``: a blocking copy is queued behind every
    batch launched since, so the CPU would launch the next batch only once the GPU ran dry."""
    if scores.device.type != "cuda":
        return scores, None
    host = scores.to("cpu", non_blocking=True)
    copied = torch.cuda.Event()  # type: ignore[no-untyped-call]
    copied.record()
    return host, copied
