"""The engine protocol: what every backend (torch, vLLM, remote) provides to ``Reranker``.

An engine scores whole requests (a query, its documents, an instruction) so that it can share
work across the documents of a query and batch across queries. It returns one score in [0, 1]
per document, in input order. Input validation happens once, in ``Reranker``, before an
engine is called.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import EngineError

__all__ = [
    "Engine",
    "Progress",
    "ScoreRequest",
    "ScoredDocuments",
    "ThreadedEngine",
    "split_scores",
]

Progress = Callable[[int], None]
"""Called with the number of pairs just scored, as scoring goes on."""


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One query, its documents, and the instruction to score them with."""

    query: str
    documents: Sequence[str]
    instruction: str


@dataclass(frozen=True, slots=True)
class ScoredDocuments:
    """Scores of one request's documents, in input order, and which ones were truncated."""

    scores: list[float]
    truncated: list[bool]


def split_scores(flat: Sequence[float], truncated: Sequence[list[bool]]) -> list[ScoredDocuments]:
    """Per-request results from the scores of all documents laid end to end, input order."""
    out, start = [], 0
    for flags in truncated:
        out.append(ScoredDocuments(list(flat[start : start + len(flags)]), list(flags)))
        start += len(flags)
    return out


@runtime_checkable
class Engine(Protocol):
    """A scoring backend. Implementations must be safe to call from several threads."""

    def score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None = None
    ) -> list[ScoredDocuments]:
        """Scores every request; one ``ScoredDocuments`` per request, in order."""
        ...

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoredDocuments]:
        """Like ``score``, without blocking the running event loop."""
        ...

    def close(self) -> None:
        """Releases the engine's resources; later calls raise ``EngineError``."""
        ...


class ThreadedEngine:
    """Base for in-process engines: one worker thread runs the model, one call at a time.

    The async methods hand the blocking call to that thread, so the event loop keeps running;
    the lock keeps concurrent sync callers from interleaving forward passes on one device.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=type(self).__name__
        )

    def score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None = None
    ) -> list[ScoredDocuments]:
        with self._lock:
            if self._executor is None:
                raise EngineError(f"{type(self).__name__} is closed")
            return self._score(requests, progress)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoredDocuments]:
        executor = self._executor
        if executor is None:
            raise EngineError(f"{type(self).__name__} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, self.score, requests)

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
                self._release()

    def _score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None
    ) -> list[ScoredDocuments]:
        raise NotImplementedError

    def _release(self) -> None:
        """Frees the model and its memory; called once, by ``close``."""
