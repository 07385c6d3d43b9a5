"""What every scoring route does between its request model and its answer: model name and
option checks, per-request preparation (``inputs``), the batching scheduler, and mapping every
outcome to its status. Routes stay thin; one instance lives on ``app.state.service``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ..engines.base import ScoredDocuments
from ..engines.base import ScoreRequest as ScoreRequestType
from ..errors import InvalidInputError
from ..reranker import Reranker
from .errors import ApiError
from .inputs import Inputs, Prepared
from .metrics import Metrics
from .protocol import Document, Usage
from .scheduler import BatchScheduler, Overloaded, ShuttingDown

__all__ = ["Scored", "Service", "texts_of"]


def texts_of(documents: Sequence[str | Document]) -> list[str]:
    return [d if isinstance(d, str) else d.text for d in documents]


@dataclass(frozen=True)
class Scored:
    """The scores of each query's documents, in input order, and the answer's usage."""

    scores: list[list[float]]
    usage: Usage


class Service:
    def __init__(
        self,
        reranker: Reranker,
        *,
        model_names: Sequence[str],
        max_documents: int,
        max_queue: int,
    ) -> None:
        self.reranker = reranker
        self.model_names = list(model_names)
        self.max_documents = max_documents
        self.inputs = Inputs(reranker)
        self.scheduler = BatchScheduler(reranker.engine, max_queue=max_queue)
        self.metrics = Metrics(lambda: self.scheduler.depth)
        self.scheduler.on_batch = self._count_batch

    def _count_batch(self, requests: list[ScoreRequestType]) -> None:
        self.metrics.batch_requests.observe(len(requests))
        self.metrics.documents.inc(sum(len(r.documents) for r in requests))

    @property
    def model_name(self) -> str:
        """The name answers carry: the first served name."""
        return self.model_names[0]

    def check_model(self, model: str | None) -> None:
        if model is not None and model not in self.model_names:
            raise ApiError(
                404,
                f"model {model!r} is not served here (served: {', '.join(self.model_names)})",
                param="model",
            )

    async def score(
        self,
        request: Request,
        queries: Sequence[tuple[str, list[str]]],
        *,
        model: str | None,
        instruction: str | None,
        max_tokens_per_doc: int | None = None,
        truncate_prompt_tokens: int | None = None,
        use_activation: bool | None = None,
        raw_scores: bool | None = None,
    ) -> Scored:
        """Scores each (query, documents) of one HTTP request.

        Raises:
            ApiError: Anything refused (4xx), the server busy or stopping (503), the client
                gone (499, never seen by it), an engine fault (500).
        """
        self.check_model(model)
        if use_activation is False or raw_scores is True:
            raise ApiError(
                400,
                "raw (pre-activation) scores are not available: this server returns "
                "probabilities in [0, 1]; drop use_activation/raw_scores",
                param="use_activation" if use_activation is False else "raw_scores",
            )
        count = sum(len(documents) for _, documents in queries)
        request.state.documents = count
        if count > self.max_documents:
            raise ApiError(
                413,
                f"{count} documents, over the limit of {self.max_documents} per request",
                param="documents",
            )

        def prepare_all() -> list[Prepared]:
            return [
                self.inputs.prepare(
                    query,
                    documents,
                    instruction,
                    max_tokens_per_doc=max_tokens_per_doc,
                    truncate_prompt_tokens=truncate_prompt_tokens,
                )
                for query, documents in queries
            ]

        try:
            prepared = await asyncio.to_thread(prepare_all)
        except InvalidInputError as exc:
            raise ApiError(400, str(exc)) from None
        tokens = sum(p.prompt_tokens for p in prepared)
        results = await self._run([p for p in prepared if p.request.documents], request)
        it = iter(results)
        scores = [next(it).scores if p.request.documents else [] for p in prepared]
        self.metrics.prompt_tokens.inc(tokens)
        return Scored(
            scores, Usage(prompt_tokens=tokens, total_tokens=tokens, total_documents=count)
        )

    async def _run(self, prepared: list[Prepared], request: Request) -> list[ScoredDocuments]:
        if not prepared:
            return []
        futures: list[asyncio.Future[ScoredDocuments]] = []
        try:
            for p in prepared:
                futures.append(self.scheduler.submit(p.request))
        except Overloaded:
            for future in futures:
                future.cancel()
            raise ApiError(
                503, "server busy: queue full, retry later", headers={"Retry-After": "1"}
            ) from None
        scored: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*futures))
        hang_up: asyncio.Future[Any] = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({scored, hang_up}, return_when=asyncio.FIRST_COMPLETED)
            client_left = not scored.done()
        finally:  # cancelled too when the shutdown grace period ends (guard.py answers 503)
            hang_up.cancel()
            if not scored.done():
                scored.cancel()  # what still waits is dropped, not scored
        if client_left:
            self.metrics.cancelled.inc()
            raise ApiError(499, "client closed the request")
        try:
            return list(scored.result())
        except ShuttingDown:
            raise ApiError(503, "server shutting down", headers={"Retry-After": "1"}) from None
        except InvalidInputError as exc:
            raise ApiError(400, str(exc)) from None
        except Exception as exc:  # this request's own engine failure, scored alone
            raise ApiError(500, f"engine error: {exc}") from exc


async def _disconnected(request: Request) -> None:
    """Returns once the client has hung up (the body is read: only a disconnect can come)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
