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
from concurrent.futures import Future, ThreadPoolExecutor
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
    """Base for in-process engines: the model runs on the engine's own worker thread, one call
    at a time.

    Sync and async calls alike hand their work to that thread and wait for it, so the model
    never runs on a caller's thread. What a model keeps per thread (inductor's CUDA graphs) is
    therefore made once and found by every later call, whichever thread makes it: Ray Data's
    pool, a web server's, a notebook's. A caller that stops waiting (Ctrl-C, a cancelled task)
    stops its call at the next batch.

    Args:
        setup_thread: Run once on the worker thread before its first call.
    """

    def __init__(self, setup_thread: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=type(self).__name__,
            initializer=self._start_worker,
            initargs=(setup_thread,),
        )

    def score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None = None
    ) -> list[ScoredDocuments]:
        stop = threading.Event()
        future = self._submit(requests, progress, stop)
        try:
            return future.result()
        except BaseException:
            stop.set()
            raise

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoredDocuments]:
        stop = threading.Event()
        future = self._submit(requests, None, stop)
        try:
            return await asyncio.wrap_future(future)
        except BaseException:
            stop.set()
            raise

    def close(self) -> None:
        """Waits for the call under way, fails the queued ones with ``EngineError``, then frees
        the model on the worker thread."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            try:
                executor.submit(self._release)
            except RuntimeError:  # the interpreter is exiting and starts no more work
                self._release()
            executor.shutdown(wait=threading.current_thread() is not self._worker)

    def _start_worker(self, setup_thread: Callable[[], None] | None) -> None:
        self._worker = threading.current_thread()
        if setup_thread is not None:
            setup_thread()

    def _submit(
        self, requests: Sequence[ScoreRequest], progress: Progress | None, stop: threading.Event
    ) -> Future[list[ScoredDocuments]]:
        with self._lock:
            if self._executor is None:
                raise EngineError(f"{type(self).__name__} is closed")
            return self._executor.submit(self._run, requests, progress, stop)

    def _run(
        self, requests: Sequence[ScoreRequest], progress: Progress | None, stop: threading.Event
    ) -> list[ScoredDocuments]:
        if self._executor is None:
            raise EngineError(f"{type(self).__name__} is closed")

        def report(pairs: int) -> None:
            if stop.is_set():
                raise EngineError("scoring cancelled: its caller stopped waiting")
            if progress is not None:
                progress(pairs)

        return self._score(requests, report)

    def _score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None
    ) -> list[ScoredDocuments]:
        raise NotImplementedError

    def _release(self) -> None:
        """Frees the model and its memory; called once, by ``close``."""
