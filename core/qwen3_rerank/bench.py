"""Times a :class:`~qwen3_rerank.Reranker` on the benchmark workloads (``qwen3-rerank bench``).

Throughput: the whole workload in one ``rerank_batch`` call, the best of ``passes`` calls after
a warm-up call and two warm-up queries alone. Latency: ``rerank`` of one query of the workload,
over ``latency_queries`` queries. Every call but the warm-up queries gets fresh inputs of the
workload's shape (another seed), so that no engine or server replays work it cached from an
earlier call, as none can for a user's new documents. Tokens are counted with the official
template, after truncation to ``max_length``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from .errors import ConfigurationError
from .prompt import DEFAULT_INSTRUCTION, DEFAULT_MAX_LENGTH, PromptEncoder
from .reranker import Reranker
from .tokenizing import batch_encoder
from .workloads import WORKLOADS, build

__all__ = ["BenchResult", "bench"]


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One workload's figures.

    Attributes:
        workload: Its name (:data:`~qwen3_rerank.workloads.WORKLOADS`).
        pairs: Query-document pairs in one pass.
        tokens: Their tokens, template included, in the fastest pass.
        pairs_per_s: Pairs over the fastest pass's wall time.
        tokens_per_s: Tokens over the same time.
        p50_ms: Median wall time of one query.
        max_ms: The slowest of the timed queries.
        torch_peak_gib: ``torch.cuda.max_memory_allocated`` over the workload, where the engine
            runs in this process on CUDA; else ``None``.
    """

    workload: str
    pairs: int
    tokens: int
    pairs_per_s: float
    tokens_per_s: float
    p50_ms: float
    max_ms: float
    torch_peak_gib: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench(
    reranker: Reranker,
    tokenizer: Any,
    workloads: Sequence[str] = WORKLOADS,
    *,
    passes: int = 3,
    latency_queries: int = 12,
    seed: int = 0,
    max_length: int = DEFAULT_MAX_LENGTH,
    report: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Times ``reranker`` on each of ``workloads``; ``tokenizer`` (a transformers tokenizer of
    the model) makes the inputs and counts their tokens. ``report`` gets a line per step.

    Raises:
        ConfigurationError: An unknown workload, or fewer than one pass or latency query.
    """
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise ConfigurationError(
            f"unknown workload {unknown[0]!r}: choose from {', '.join(WORKLOADS)}"
        )
    if passes < 1 or latency_queries < 1:
        raise ConfigurationError("passes and latency_queries must be at least 1")
    encoder = PromptEncoder(batch_encoder(tokenizer), max_length)
    say = report or (lambda line: None)
    peak = _TorchPeak(reranker)
    # seed: the warm-up; the next ``passes`` seeds: the timed passes; then one per query
    variants = [build(tokenizer, seed + i) for i in range(1 + passes + latency_queries)]
    results = []
    for name in workloads:
        inputs = [variant[name] for variant in variants]
        peak.reset()
        warm = inputs[0]  # twice alone: on CUDA, a batch shape's graph is recorded when seen again
        reranker.rerank_batch(warm.queries, warm.documents)
        for _ in range(2):
            reranker.rerank(warm.queries[0], warm.documents[0])
        timed = []
        for i, wl in enumerate(inputs[1 : 1 + passes], 1):
            seconds = _timed(partial(reranker.rerank_batch, wl.queries, wl.documents))
            timed.append((seconds, wl))
            say(f"{name}: pass {i}/{passes}: {wl.pairs / seconds:.1f} pairs/s")
        seconds, fastest = min(timed, key=lambda t: t[0])
        tokens = sum(
            encoded.pair_length(i)
            for query, documents in fastest.items()
            for encoded in [encoder.encode(query, documents, DEFAULT_INSTRUCTION)]
            for i in range(len(documents))
        )
        latencies = [
            _timed(partial(reranker.rerank, wl.queries[0], wl.documents[0])) * 1000
            for wl in inputs[1 + passes :]
        ]
        result = BenchResult(
            workload=name,
            pairs=fastest.pairs,
            tokens=tokens,
            pairs_per_s=round(fastest.pairs / seconds, 1),
            tokens_per_s=round(tokens / seconds, 1),
            p50_ms=round(statistics.median(latencies), 2),
            max_ms=round(max(latencies), 2),
            torch_peak_gib=peak.gib(),
        )
        say(f"{name}: {result.pairs_per_s} pairs/s, one query {result.p50_ms} ms (p50)")
        results.append(result)
    return results


def _timed(call: Callable[[], object]) -> float:
    """Wall seconds of ``call()`` (scores come back as Python floats: the device is done)."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


class _TorchPeak:
    """torch's peak allocation on the engine's CUDA device, where it has one."""

    def __init__(self, reranker: Reranker) -> None:
        device = getattr(reranker.engine, "device", None)
        self.device = device if getattr(device, "type", None) == "cuda" else None

    def reset(self) -> None:
        if self.device is not None:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)

    def gib(self) -> float | None:
        if self.device is None:
            return None
        import torch

        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
