"""The one benchmark harness: times a scorer on the workloads (``qwen3-rerank bench`` and
benchmarks/bench.py, which times the peers with it too).

A :class:`Scorer` scores one query's documents (``per_query``) and, where it can, every query of
a workload in one call (``at_once``). For each workload and each of those modes: a warm-up call,
then the best of ``passes`` calls, each on fresh inputs of the workload's shape (another seed),
so that nothing replays work cached from an earlier call, as nothing can for a user's new
documents; the faster mode is the workload's figure. With ``repeat=True`` the warm-up's inputs
are timed again apart (an engine with a prefix cache partly skips them). Latency: ``per_query``
on one fresh query of the workload, ``latency_queries`` times. Tokens are counted with the
official template, after truncation to ``max_length``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigurationError
from .prompt import DEFAULT_INSTRUCTION, DEFAULT_MAX_LENGTH, PromptEncoder
from .reranker import Reranker
from .tokenizing import batch_encoder
from .workloads import GPU_WORKLOADS, WORKLOADS, Workload, build

__all__ = ["BenchResult", "Scorer", "bench", "measure", "reranker_scorer"]

Scores = list[list[float]]


@dataclass(frozen=True, slots=True)
class Scorer:
    """What the harness times.

    Attributes:
        per_query: Scores of one query's documents, input order.
        at_once: Scores of every query's documents in one call, or ``None`` where the scorer
            has no such call.
        prepare: Called with a workload's warm-up inputs before anything is timed (a peer picks
            its best batch size there), or ``None``.
        cuda_device: The CUDA device whose torch peak allocation to report, where the scorer
            runs in this process on one.
    """

    per_query: Callable[[str, list[str]], list[float]]
    at_once: Callable[[list[str], list[list[str]]], Scores] | None = None
    prepare: Callable[[Workload], None] | None = None
    cuda_device: Any = None


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One workload's figures.

    Attributes:
        workload: Its name (:data:`~qwen3_rerank.workloads.WORKLOADS`).
        pairs: Query-document pairs in one pass.
        tokens: Their tokens, template included, in the warm-up's inputs.
        pairs_per_s: Pairs over the fastest pass's wall time, in the faster mode.
        tokens_per_s: Tokens over the same time.
        mode: That mode: ``"at_once"`` (one call for the workload) or ``"per_query"``.
        p50_ms: Median wall time of one query; with no latency queries, of the timed passes
            where the workload is one query, else ``None``.
        max_ms: The slowest of the timed queries.
        torch_peak_gib: ``torch.cuda.max_memory_allocated`` over the workload, where the scorer
            runs in this process on CUDA; else ``None``.
        modes: pairs/s of each mode.
        repeat_pairs_per_s: pairs/s on the warm-up's inputs again (the better mode), where asked.
        scores: The warm-up's scores, per query, input order.
    """

    workload: str
    pairs: int
    tokens: int
    pairs_per_s: float
    tokens_per_s: float
    mode: str
    p50_ms: float | None
    max_ms: float | None
    torch_peak_gib: float | None
    modes: dict[str, float] = field(default_factory=dict)
    repeat_pairs_per_s: float | None = None
    scores: Scores = field(default_factory=list, repr=False)

    def as_dict(self, scores: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not scores:
            del out["scores"]
        return out


def reranker_scorer(reranker: Reranker) -> Scorer:
    """``score`` per query, ``rerank_batch`` for the whole workload."""
    device = getattr(reranker.engine, "device", None)

    def at_once(queries: list[str], documents: list[list[str]]) -> Scores:
        return [
            [r.score for r in sorted(results, key=lambda r: r.index)]
            for results in reranker.rerank_batch(queries, documents)
        ]

    return Scorer(
        reranker.score,
        at_once,
        cuda_device=device if getattr(device, "type", None) == "cuda" else None,
    )


def bench(
    reranker: Reranker,
    tokenizer: Any,
    workloads: Sequence[str] = GPU_WORKLOADS,
    *,
    passes: int = 3,
    latency_queries: int = 12,
    seed: int = 0,
    max_length: int = DEFAULT_MAX_LENGTH,
    report: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Times ``reranker`` on each of ``workloads``, the whole workload in one ``rerank_batch``
    call; ``tokenizer`` (a transformers tokenizer of the model) makes the inputs and counts
    their tokens. ``report`` gets a line per step.

    Raises:
        ConfigurationError: An unknown workload, fewer than one pass, or negative
            ``latency_queries``.
    """
    scorer = reranker_scorer(reranker)
    on_cpu = getattr(getattr(reranker.engine, "device", None), "type", None) == "cpu"
    return measure(
        scorer,
        tokenizer,
        workloads,
        passes=passes,
        latency_queries=latency_queries,
        seed=seed,
        max_length=max_length,
        report=report,
        modes=("at_once",),
        latency_warmups=0 if on_cpu else 2,
    )


def measure(
    scorer: Scorer,
    tokenizer: Any,
    workloads: Sequence[str] = GPU_WORKLOADS,
    *,
    passes: int = 3,
    latency_queries: int = 12,
    seed: int = 0,
    max_length: int = DEFAULT_MAX_LENGTH,
    repeat: bool = False,
    report: Callable[[str], None] | None = None,
    modes: Sequence[str] = ("per_query", "at_once"),
    latency_warmups: int = 2,
) -> list[BenchResult]:
    """Times ``scorer`` on each of ``workloads`` in each of ``modes`` it has (see the module);
    ``per_query`` times latency whatever the modes, after ``latency_warmups`` untimed queries
    (on CUDA a batch shape's graph is recorded when it is seen again).

    Raises:
        ConfigurationError: An unknown workload, fewer than one pass, or negative
            ``latency_queries``.
    """
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise ConfigurationError(
            f"unknown workload {unknown[0]!r}: choose from {', '.join(WORKLOADS)}"
        )
    if passes < 1 or latency_queries < 0:
        raise ConfigurationError("passes must be at least 1 and latency_queries at least 0")
    encoder = PromptEncoder(batch_encoder(tokenizer), max_length)
    say = report or (lambda line: None)
    peak = _TorchPeak(scorer.cuda_device)
    calls: dict[str, Callable[[Workload], Scores]] = {}
    if "per_query" in modes:
        calls["per_query"] = lambda wl: [scorer.per_query(q, ds) for q, ds in wl.items()]
    if "at_once" in modes and scorer.at_once is not None:
        at_once = scorer.at_once
        calls["at_once"] = lambda wl: at_once(wl.queries, wl.documents)
    if not calls:
        raise ConfigurationError(f"the scorer has none of the modes {', '.join(modes)}")
    fresh_inputs = passes * len(calls) + latency_queries
    # seed: the warm-up; every later seed: one timed call's fresh inputs
    variants = [build(tokenizer, seed + i, workloads) for i in range(1 + fresh_inputs)]
    results = []
    for name in workloads:
        warm = variants[0][name]
        fresh: Iterator[Workload] = (v[name] for v in variants[1:])
        peak.reset()
        if scorer.prepare is not None:
            scorer.prepare(warm)
        scores: Scores = []
        speeds: dict[str, float] = {}
        repeats: list[float] = []
        pass_ms: dict[str, list[float]] = {}
        for mode, call in calls.items():
            got = call(warm)  # warm-up (compiles, records graphs)
            scores = scores or got
            best = float("inf")
            for i in range(1, passes + 1):
                seconds = _timed(call, next(fresh))
                best = min(best, seconds)
                pass_ms.setdefault(mode, []).append(seconds * 1000)
                say(f"{name}: {mode} pass {i}/{passes}: {warm.pairs / seconds:.1f} pairs/s")
            speeds[mode] = _rate(warm.pairs / best)
            if repeat:
                again = min(_timed(call, warm) for _ in range(passes))
                repeats.append(_rate(warm.pairs / again))
        for _ in range(latency_warmups if latency_queries else 0):
            scorer.per_query(warm.queries[0], warm.documents[0])
        latencies = []
        for _ in range(latency_queries):
            one = next(fresh)
            start = time.perf_counter()
            scorer.per_query(one.queries[0], one.documents[0])
            latencies.append((time.perf_counter() - start) * 1000)
        if not latency_queries and len(warm.queries) == 1:
            latencies = pass_ms.get("per_query", pass_ms.get("at_once", []))
        tokens = sum(
            encoded.pair_length(i)
            for query, documents in warm.items()
            for encoded in [encoder.encode(query, documents, DEFAULT_INSTRUCTION)]
            for i in range(len(documents))
        )
        mode = max(speeds, key=speeds.__getitem__)
        result = BenchResult(
            workload=name,
            pairs=warm.pairs,
            tokens=tokens,
            pairs_per_s=speeds[mode],
            tokens_per_s=_rate(speeds[mode] * tokens / warm.pairs),
            mode=mode,
            p50_ms=round(statistics.median(latencies), 2) if latencies else None,
            max_ms=round(max(latencies), 2) if latencies else None,
            torch_peak_gib=peak.gib(),
            modes=speeds,
            repeat_pairs_per_s=max(repeats) if repeats else None,
            scores=scores,
        )
        say(f"{name}: {result.pairs_per_s} pairs/s, one query {result.p50_ms} ms (p50)")
        results.append(result)
    return results


def _rate(per_second: float) -> float:
    """Four significant digits: a CPU's fraction of a pair per second keeps its precision."""
    return float(f"{per_second:.4g}")


def _timed(call: Callable[[Workload], object], workload: Workload) -> float:
    """Wall seconds of ``call(workload)`` (scores come back as Python floats: the device is
    done)."""
    start = time.perf_counter()
    call(workload)
    return time.perf_counter() - start


class _TorchPeak:
    """torch's peak allocation on a CUDA device, where there is one."""

    def __init__(self, device: Any) -> None:
        self.device = device

    def reset(self) -> None:
        if self.device is not None:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)

    def gib(self) -> float | None:
        if self.device is None:
            return None
        import torch

        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
