"""Dynamic batching: requests that arrive while the engine is busy are scored together.

One worker task takes every waiting request (up to ``max_batch_documents`` documents) and
hands them to the engine in one call, so the engine can pack documents of many queries into
its token-budget batches; throughput grows with concurrency. The waiting line is bounded:
past ``max_queue`` waiting requests, ``submit`` refuses at once (the server answers 503 with
``Retry-After``) instead of building an unbounded backlog.

A failure stays with its request: when an engine call fails, its requests are scored again
one by one, so each gets its own result or its own error, never a neighbour's. A request whose
caller stopped waiting (its future cancelled: the client hung up) is dropped before the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..engines.base import Engine, ScoredDocuments, ScoreRequest
from ..unique_pairs import unique_pairs

__all__ = ["BatchScheduler", "Overloaded", "ShuttingDown"]


class Overloaded(Exception):
    """The waiting line is full; the caller should retry later."""


class ShuttingDown(Exception):
    """The server stopped before the request was scored."""


@dataclass
class _Job:
    request: ScoreRequest
    future: asyncio.Future[ScoredDocuments] = field(repr=False)


class BatchScheduler:
    """Collects requests and scores them in batches on one engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_queue: int = 256,
        max_batch_documents: int = 4096,
        on_batch: Callable[[list[ScoreRequest]], None] = lambda requests: None,
    ) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self.max_batch_documents = max_batch_documents
        self.on_batch = on_batch  # told the requests of each engine call (for /metrics)
        self._waiting: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for the engine."""
        return len(self._waiting)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stops the worker; jobs still waiting fail with ``ShuttingDown``. The server calls it
        at shutdown, after uvicorn has let in-flight requests finish."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for job in self._waiting:
            if not job.future.done():
                job.future.set_exception(ShuttingDown())
        self._waiting.clear()

    def submit(self, request: ScoreRequest) -> asyncio.Future[ScoredDocuments]:
        """Queues one request to be scored along with whatever else is waiting; cancel the
        future to drop it while it still waits.

        Raises:
            Overloaded: ``max_queue`` requests are already waiting.
        """
        if len(self._waiting) >= self.max_queue:
            raise Overloaded
        job = _Job(request, asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        self._wakeup.set()
        return job.future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._waiting:
                batch: list[_Job] = []
                documents = 0
                while self._waiting and (
                    not batch
                    or documents + len(self._waiting[0].request.documents)
                    <= self.max_batch_documents
                ):
                    job = self._waiting.popleft()
                    if job.future.done():  # its caller stopped waiting: not scored
                        continue
                    batch.append(job)
                    documents += len(job.request.documents)
                if batch:
                    await self._score(batch)

    async def _score(self, batch: list[_Job]) -> None:
        requests = [job.request for job in batch]
        self.on_batch(requests)
        try:
            # identical pairs, within a request or across the batch, are scored once and tie
            unique, expand, _ = unique_pairs(requests)
            results = expand(await self.engine.ascore(unique))
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            for job in batch:  # one by one: the failing request fails alone
                if not job.future.done():
                    await self._score([job])
            return
        for job, result in zip(batch, results, strict=True):
            _settle(job, result)


def _settle(job: _Job, outcome: ScoredDocuments | Exception) -> None:
    if job.future.done():
        return
    if isinstance(outcome, Exception):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)
