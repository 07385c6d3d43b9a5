"""The remote engine: scores over HTTP against vLLM, Cohere, Jina, TEI or Infinity rerank APIs.

Long candidate lists are split into requests of at most ``max_documents_per_request``
documents (TEI's default server limit, 32, is respected), sent concurrently up to
``max_concurrency`` and merged back in input order. A request the server refuses as too large
(413) is sent again in two halves, and the engine sends at most that many documents per request
from then on, so a server's lower limit is learned instead of failing every call. Other failures
follow one retry policy (``retry.py``).
Each answer is mapped by ``index`` and checked (``dialects.py``). For a plain vLLM server the
client wraps query and documents in the Qwen3 template itself, exactly as the torch engine
does; without it, rankings are close to random.

There is one send path, async. Sync calls run it on the engine's own event loop, in a thread
started on the first sync call, so that sync and async calls split, retry and learn alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, NamedTuple, TypeVar

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
from .retry import retry_after_seconds, retrying

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("httpx", "remote") from exc

__all__ = ["RemoteEngine"]

_log = logging.getLogger(__name__)

_LANE = 4  # connections per async client (see _Lanes)
T = TypeVar("T")


class Chunk(NamedTuple):
    """One HTTP request's share of a call: documents ``start:`` of request ``request``."""

    request: int
    start: int
    query: str
    documents: list[str]
    instruction: str


class _Lanes:
    """One event loop's free request slots: ``max_concurrency`` of them, over small async
    clients of ``_LANE`` connections each (a client cannot outlive its loop).

    The slots gate every call on the engine in this loop together. Why several small clients:
    httpx's pool rescans all its connections, quadratically and polling idle sockets, whenever a
    request starts or ends, so one large pool costs client CPU per request that grows with the
    pool (docs/performance.md)."""

    def __init__(self, settings: dict[str, Any], max_concurrency: int) -> None:
        self.clients: list[httpx.AsyncClient] = []
        # last in, first out: one caller at a time keeps reusing one warm connection
        self.slots: asyncio.Queue[httpx.AsyncClient] = asyncio.LifoQueue()
        for first in range(0, max_concurrency, _LANE):
            size = min(_LANE, max_concurrency - first)
            client = httpx.AsyncClient(**settings, limits=httpx.Limits(max_connections=size))
            self.clients.append(client)
            for _ in range(size):
                self.slots.put_nowait(client)

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self.clients))


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
        self.model = model
        self.dialect: Dialect = DIALECTS[options.api]
        self.base_url = options.base_url.rstrip("/")
        limits = [n for n in (options.max_documents_per_request, self.dialect.max_documents) if n]
        self.max_documents = min(limits) if limits else None
        self.apply_template = (
            self.dialect.templated_by_client
            if options.apply_template is None
            else options.apply_template
        )
        api_key = options.api_key
        if api_key is None and self.dialect.api_key_env:
            api_key = os.environ.get(self.dialect.api_key_env) or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._settings: dict[str, Any] = {
            "base_url": self.base_url,
            # one TLS context for all clients: building one loads the whole CA bundle
            "verify": httpx.create_ssl_context(),
            "timeout": options.timeout,
            "headers": headers,
            "transport": options.transport,
        }
        self._lock = threading.Lock()
        self._lanes: dict[asyncio.AbstractEventLoop, _Lanes] = {}
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._own_thread: threading.Thread | None = None
        self._closing: set[concurrent.futures.Future[None]] = set()  # kept until done
        self._closed = False

    # -- the Engine protocol ------------------------------------------------------------------

    def score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None = None
    ) -> list[ScoredDocuments]:
        return self._run(self._score(requests, progress))

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoredDocuments]:
        return await self._score(requests, None)

    def close(self) -> None:
        """Closes every connection. Clients of an event loop that is running (``close`` called
        from async code) are closed by a task on that loop; use ``aclose`` to wait for it."""
        with self._lock:
            self._closed = True
            lanes, self._lanes = self._lanes, {}
            own_loop, own_thread = self._own_loop, self._own_thread
            self._own_loop = self._own_thread = None
        for loop, loop_lanes in lanes.items():
            if loop is own_loop or loop.is_closed():
                continue
            if loop.is_running():
                closing = asyncio.run_coroutine_threadsafe(loop_lanes.aclose(), loop)
                if _running_loop() is loop:  # cannot wait here: the loop runs it after us
                    self._closing.add(closing)
                    closing.add_done_callback(self._closing.discard)
                else:
                    closing.result()
            else:
                loop.run_until_complete(loop_lanes.aclose())
        if own_loop is not None and own_thread is not None:
            if own_loop in lanes:
                asyncio.run_coroutine_threadsafe(lanes[own_loop].aclose(), own_loop).result()
            own_loop.call_soon_threadsafe(own_loop.stop)
            own_thread.join()
            own_loop.close()

    async def aclose(self) -> None:
        """``close``, waiting until this event loop's connections are closed."""
        loop = asyncio.get_running_loop()
        with self._lock:
            lanes = self._lanes.pop(loop, None)
        if lanes is not None:
            await lanes.aclose()
        await asyncio.to_thread(self.close)

    # -- the send path --------------------------------------------------------------------------

    async def _score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None
    ) -> list[ScoredDocuments]:
        lanes = self._loop_lanes()
        chunks = self._chunks(requests)
        answers = await asyncio.gather(*(self._send(lanes, c, progress) for c in chunks))
        return _merge(requests, chunks, list(answers))

    def _chunks(self, requests: Sequence[ScoreRequest]) -> list[Chunk]:
        chunks: list[Chunk] = []
        for i, r in enumerate(requests):
            query, documents = self._texts(r)
            step = self.max_documents or max(len(documents), 1)
            for start in range(0, len(documents), step):
                part = documents[start : start + step]
                chunks.append(Chunk(i, start, query, part, r.instruction))
        return chunks

    async def _send(self, lanes: _Lanes, chunk: Chunk, progress: Progress | None) -> list[float]:
        try:
            scores = await self._post(lanes, chunk)
        except RemoteStatusError as error:
            if not _too_large(error, chunk):
                raise
            first, second = _halves(chunk)
            halves = await asyncio.gather(
                self._send(lanes, first, progress), self._send(lanes, second, progress)
            )
            self._learn_limit(len(chunk.documents), len(first.documents))
            return halves[0] + halves[1]
        if progress is not None:
            progress(len(chunk.documents))
        return scores

    async def _post(self, lanes: _Lanes, chunk: Chunk) -> list[float]:
        """One request, tried again by the retry policy; a slot is held only while it is sent."""
        body = self.dialect.build(chunk.query, chunk.documents, self.model, chunk.instruction)
        async for attempt in retrying(self.options.max_retries):
            with attempt:
                client = await lanes.slots.get()
                try:
                    response = await client.post(self.dialect.path, json=body)
                except httpx.TransportError as exc:
                    raise _transport_error(exc, self._url()) from exc
                finally:
                    lanes.slots.put_nowait(client)
                if not response.is_success:
                    after = retry_after_seconds(response.headers.get("Retry-After"))
                    raise RemoteStatusError(response.status_code, response.text, self._url(), after)
                return self._parse(response, len(chunk.documents))
        raise AssertionError("unreachable: the policy raises the last error")  # pragma: no cover

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

    # -- event loops ----------------------------------------------------------------------------

    def _loop_lanes(self) -> _Lanes:
        """The running loop's request slots, made on its first call."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise EngineError("RemoteEngine is closed")
            lanes = self._lanes.get(loop)
            if lanes is None:
                # clients of a loop that has ended cannot be closed any more; let them go
                for ended in [other for other in self._lanes if other.is_closed()]:
                    del self._lanes[ended]
                lanes = self._lanes[loop] = _Lanes(self._settings, self.options.max_concurrency)
            return lanes

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs ``coroutine`` to its end on the engine's own loop, from any thread."""
        with self._lock:
            if self._closed:
                coroutine.close()
                raise EngineError("RemoteEngine is closed")
            if self._own_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="RemoteEngine", daemon=True)
                thread.start()
                self._own_loop, self._own_thread = loop, thread
            own_loop = self._own_loop
        return asyncio.run_coroutine_threadsafe(coroutine, own_loop).result()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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
