"""The remote engine: scores over HTTP against vLLM, Cohere, Jina, TEI or Infinity rerank APIs.

Long candidate lists are split into requests of at most ``max_documents_per_request``
documents (TEI's default server limit, 32, is respected), sent concurrently up to
``max_concurrency`` and merged back in input order. A request the server refuses as too large
(413) is sent again in two halves, and the engine sends at most that many documents per request
from then on, so a server's lower limit is learned instead of failing every call. Connection
errors, timeouts, 429 and 5xx are retried with exponential backoff and jitter, honouring
``Retry-After``; other 4xx are not.
Each answer is mapped by ``index`` and checked (``dialects.py``). For a plain vLLM server the
client wraps query and documents in the Qwen3 template itself, exactly as the torch engine
does; without it, rankings are close to random.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from ...errors import (
    ConfigurationError,
    EngineError,
    InvalidInputError,
    InvalidResponseError,
    MissingDependencyError,
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
    clip,
)
from ...prompt import DEFAULT_INSTRUCTION, format_document_part, format_sides
from ..base import Progress, ScoredDocuments, ScoreRequest
from ..dialects import DIALECTS, Dialect
from ..options import options_from
from .options import RemoteOptions

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("httpx", "remote") from exc

__all__ = ["RemoteEngine"]

_log = logging.getLogger(__name__)

_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 8.0
_RETRY_AFTER_CAP_S = 60.0


class Chunk(NamedTuple):
    """One HTTP request's share of a call: documents ``start:`` of request ``request``."""

    request: int
    start: int
    query: str
    documents: list[str]
    instruction: str


_LoopClients = tuple[
    asyncio.AbstractEventLoop, list[httpx.AsyncClient], asyncio.Queue[httpx.AsyncClient]
]
_LANE = 4  # connections per async client (see _async_lanes)


class RemoteEngine:
    """Scores through a remote ``/rerank`` API; safe to share between threads and tasks.

    Args:
        model: Model name sent in the body (``None``: omitted, the server's default).
        options: :class:`~qwen3_rerank.engines.remote.RemoteOptions`; or give them as keywords.
    """

    def __init__(
        self, model: str | None = None, options: RemoteOptions | None = None, **kwargs: Any
    ) -> None:
        if options is None:
            options = options_from("remote", RemoteOptions, kwargs)
        elif kwargs:
            raise ConfigurationError("give RemoteOptions or keyword options, not both")
        self.options = options
        self.dialect: Dialect = DIALECTS[options.api]
        self.base_url = options.base_url.rstrip("/")
        self.model = model
        self.max_retries = options.max_retries
        self.max_concurrency = options.max_concurrency
        limits = [n for n in (options.max_documents_per_request, self.dialect.max_documents) if n]
        self.max_documents = min(limits) if limits else None
        self.apply_template = (
            self.dialect.templated_by_client
            if options.apply_template is None
            else options.apply_template
        )
        headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
        self._settings: dict[str, Any] = {
            "base_url": self.base_url,
            # one TLS context for all clients: building one loads the CA bundle (~40 ms)
            "verify": httpx.create_ssl_context(),
            "timeout": options.timeout,
            "headers": headers,
            "limits": httpx.Limits(max_connections=options.max_concurrency),
        }
        transport, async_transport = options.transport, options.async_transport
        if async_transport is None and isinstance(transport, httpx.MockTransport):
            async_transport = transport
        self._async_transport = async_transport
        self._client: httpx.Client | None = httpx.Client(transport=transport, **self._settings)
        self._gate = threading.BoundedSemaphore(options.max_concurrency)
        self._async: _LoopClients | None = None

    # -- the Engine protocol ------------------------------------------------------------------

    def score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None = None
    ) -> list[ScoredDocuments]:
        client = self._client
        if client is None:
            raise EngineError("RemoteEngine is closed")
        chunks = self._chunks(requests)

        def send(chunk: Chunk) -> list[float]:
            scores = self._send(client, chunk)
            if progress is not None:
                progress(len(chunk.documents))
            return scores

        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            answers = list(pool.map(send, chunks))
        return _merge(requests, chunks, answers)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoredDocuments]:
        if self._client is None:
            raise EngineError("RemoteEngine is closed")
        lanes = self._async_lanes()
        chunks = self._chunks(requests)
        answers = await asyncio.gather(*(self._asend(lanes, c) for c in chunks))
        return _merge(requests, chunks, list(answers))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._async is not None:
            loop, clients, _ = self._async
            self._async = None
            if not loop.is_closed() and not loop.is_running():
                for client in clients:
                    loop.run_until_complete(client.aclose())

    # -- requests -----------------------------------------------------------------------------

    def _chunks(self, requests: Sequence[ScoreRequest]) -> list[Chunk]:
        chunks: list[Chunk] = []
        for i, r in enumerate(requests):
            query, documents = self._texts(r)
            step = self.max_documents or max(len(documents), 1)
            for start in range(0, len(documents), step):
                part = documents[start : start + step]
                chunks.append(Chunk(i, start, query, part, r.instruction))
        return chunks

    def _send(self, client: httpx.Client, chunk: Chunk) -> list[float]:
        try:
            with self._gate:
                return self._post(client, chunk)
        except RemoteStatusError as error:
            if not _too_large(error, chunk):
                raise
        first, second = _halves(chunk)
        scores = self._send(client, first) + self._send(client, second)
        self._learn_limit(len(chunk.documents), len(first.documents))
        return scores

    async def _asend(self, lanes: asyncio.Queue[httpx.AsyncClient], chunk: Chunk) -> list[float]:
        client = await lanes.get()
        try:
            return await self._apost(client, chunk)
        except RemoteStatusError as error:
            if not _too_large(error, chunk):
                raise
        finally:
            lanes.put_nowait(client)
        first, second = _halves(chunk)
        scores = await asyncio.gather(self._asend(lanes, first), self._asend(lanes, second))
        self._learn_limit(len(chunk.documents), len(first.documents))
        return scores[0] + scores[1]

    def _learn_limit(self, refused: int, accepted: int) -> None:
        """After a 413 for ``refused`` documents whose halves went through: send at most
        ``accepted`` per request from now on. Learned only once the halves succeed, so that
        one document too large on its own does not shrink every later request."""
        if self.max_documents is None or accepted < self.max_documents:
            self.max_documents = accepted
            _log.warning(
                "%s refused %d documents in one request (HTTP 413); sending at most %d per "
                "request from now on (max_documents_per_request sets it up front)",
                self._url(),
                refused,
                accepted,
            )

    def _texts(self, request: ScoreRequest) -> tuple[str, list[str]]:
        if self.apply_template:
            parts = [format_document_part(d) for d in request.documents]
            return format_sides(request.query, parts, request.instruction)
        if request.instruction != DEFAULT_INSTRUCTION and not self.dialect.sends_instruction:
            raise InvalidInputError(
                f"the {self.dialect.name} API takes no instruction; pass apply_template=True "
                "if the server scores the strings it is sent"
            )
        return request.query, list(request.documents)

    def _body(self, chunk: Chunk) -> dict[str, Any]:
        return self.dialect.build(chunk.query, chunk.documents, self.model, chunk.instruction)

    def _post(self, client: httpx.Client, chunk: Chunk) -> list[float]:
        body, count = self._body(chunk), len(chunk.documents)
        for attempt in range(self.max_retries + 1):
            try:
                response = client.post(self.dialect.path, json=body)
            except httpx.TransportError as exc:
                wait = self._retry_or_raise(attempt, _transport_error(exc, self._url()), None)
            else:
                if response.is_success:
                    return self._parse(response, count)
                wait = self._retry_or_raise(attempt, _status_error(response, self._url()), response)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _apost(self, client: httpx.AsyncClient, chunk: Chunk) -> list[float]:
        body, count = self._body(chunk), len(chunk.documents)
        for attempt in range(self.max_retries + 1):
            try:
                response = await client.post(self.dialect.path, json=body)
            except httpx.TransportError as exc:
                wait = self._retry_or_raise(attempt, _transport_error(exc, self._url()), None)
            else:
                if response.is_success:
                    return self._parse(response, count)
                wait = self._retry_or_raise(attempt, _status_error(response, self._url()), response)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_or_raise(
        self, attempt: int, error: RemoteError, response: httpx.Response | None
    ) -> float:
        """Seconds to wait before trying again; raises when the error is final."""
        if not error.retryable or attempt == self.max_retries:
            raise error
        return _backoff(attempt, response)

    def _parse(self, response: httpx.Response, count: int) -> list[float]:
        try:
            payload = response.json()
        except ValueError as exc:
            raise InvalidResponseError(
                f"{self._url()} answered with invalid JSON: {clip(repr(response.text), 200)}"
            ) from exc
        return self.dialect.parse(payload, count)

    def _url(self) -> str:
        return self.base_url + self.dialect.path

    def _async_lanes(self) -> asyncio.Queue[httpx.AsyncClient]:
        """This event loop's free request slots: ``max_concurrency`` of them, over small
        async clients of ``_LANE`` connections each (a client cannot outlive its loop).

        The slots gate every call on this engine together (with a gate per call, a user's
        transport saw every call's requests at once). Why several small clients: httpx's pool
        rescans all its connections, quadratically and polling idle sockets, whenever a
        request starts or ends; 200 concurrent 1-document calls to our server through one
        pool of 32 connections cost 5.1 ms of client CPU per request, 1.7 ms this way."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            sizes = [
                min(_LANE, self.max_concurrency - n) for n in range(0, self.max_concurrency, _LANE)
            ]
            settings = {**self._settings}
            clients = []
            # last in, first out: one caller at a time keeps reusing one warm connection
            slots: asyncio.Queue[httpx.AsyncClient] = asyncio.LifoQueue()
            for size in sizes:
                settings["limits"] = httpx.Limits(max_connections=size)
                client = httpx.AsyncClient(transport=self._async_transport, **settings)
                clients.append(client)
                for _ in range(size):
                    slots.put_nowait(client)
            self._async = (loop, clients, slots)
        return self._async[2]


def _merge(
    requests: Sequence[ScoreRequest], chunks: list[Chunk], answers: list[list[float]]
) -> list[ScoredDocuments]:
    scores = [[0.0] * len(r.documents) for r in requests]
    for chunk, answer in zip(chunks, answers, strict=True):
        scores[chunk.request][chunk.start : chunk.start + len(answer)] = answer
    return [ScoredDocuments(s, [False] * len(s)) for s in scores]


def _too_large(error: RemoteStatusError, chunk: Chunk) -> bool:
    """A 413 for two documents or more: worth sending again in halves."""
    return error.status_code == 413 and len(chunk.documents) > 1


def _halves(chunk: Chunk) -> tuple[Chunk, Chunk]:
    half = (len(chunk.documents) + 1) // 2
    first = chunk._replace(documents=chunk.documents[:half])
    return first, chunk._replace(start=chunk.start + half, documents=chunk.documents[half:])


def _transport_error(exc: httpx.TransportError, url: str) -> RemoteError:
    if isinstance(exc, httpx.TimeoutException):
        return RemoteTimeoutError(f"{url} did not answer in time ({type(exc).__name__})")
    return RemoteConnectionError(f"{url}: {type(exc).__name__}: {exc}")


def _status_error(response: httpx.Response, url: str) -> RemoteStatusError:
    return RemoteStatusError(response.status_code, response.text, url)


def _backoff(attempt: int, response: httpx.Response | None) -> float:
    """Seconds to wait before the next try: ``Retry-After`` if the server sent one, else
    exponential backoff with jitter."""
    if response is not None:
        after = _retry_after(response.headers.get("Retry-After"))
        if after is not None:
            return min(after, _RETRY_AFTER_CAP_S)
    delay: float = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)
    return delay * (0.5 + random.random() / 2)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds or an HTTP date; ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
