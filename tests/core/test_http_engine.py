"""The remote engine against real HTTP servers on 127.0.0.1 speaking each vendor's shapes."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from qwen3_rerank import (
    ConfigurationError,
    EngineError,
    InvalidInputError,
    InvalidResponseError,
    RemoteConnectionError,
    RemoteStatusError,
    RemoteTimeoutError,
    Reranker,
)
from qwen3_rerank.engines.dialects import DIALECTS
from qwen3_rerank.prompt import PREFIX, SUFFIX

QUERY = "what do pandas eat?"
DOCS = [f"document number {i} " + "bamboo " * (i % 7) for i in range(10)]

Action = tuple[Any, ...]
Behaviour = Callable[[str, dict[str, Any], int], Action]


def vendor_score(text: str) -> float:
    """What the fake servers answer: a deterministic score per document text."""
    return (sum(map(ord, text)) % 997) / 997


def documented_answer(path: str, body: dict[str, Any]) -> Any:
    """Each vendor's documented response shape for ``body`` (most sort by score)."""
    texts = body.get("documents") or body.get("texts") or body.get("text_2") or []
    scored = [(i, vendor_score(t)) for i, t in enumerate(texts)]
    ranked = sorted(scored, key=lambda x: -x[1])
    if path == "/score":
        return {"id": "s", "data": [{"index": i, "score": s, "object": "score"} for i, s in scored]}
    if "texts" in body:  # TEI: bare list, sorted
        return [{"index": i, "score": s} for i, s in ranked]
    results = [{"index": i, "relevance_score": s} for i, s in ranked]
    if path == "/v1/rerank" and "return_documents" not in body:  # vLLM
        for r in results:
            r["document"] = {"text": texts[r["index"]]}
        return {"id": "r", "model": body.get("model"), "usage": {}, "results": results}
    if path == "/v2/rerank":
        return {"id": "c", "results": results, "meta": {}}
    return {"results": results, "usage": {"total_tokens": 1}}


class QuietServer(ThreadingHTTPServer):
    """Leaves out the traceback of a client that hung up before its answer was written (the
    timeout tests' clients do); any other error in a handler is printed as usual."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    """A loopback HTTP server; ``behaviour(path, body, n)`` decides each answer (n counts calls).

    Actions: ("json", status, payload[, headers]), ("raw", status, text), ("drop",),
    ("stall", seconds, then-action).
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.behaviour: Behaviour = lambda path, body, n: (
            "json",
            200,
            documented_answer(path, body),
        )
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append((self.path, dict(self.headers), body))
                    n = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._act(server.behaviour(self.path, body, n))
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _act(self, action: Action) -> None:
                kind = action[0]
                if kind == "stall":
                    time.sleep(action[1])
                    return self._act(action[2])
                if kind == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return None
                status = action[1]
                data = (action[2] if kind == "raw" else json.dumps(action[2])).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (action[3] if len(action) > 3 else {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
                return None

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer()
    yield s
    s.close()


EXPECTED_BODY_KEYS = {
    "qwen3": ("/v1/rerank", {"model", "query", "documents", "top_n", "instruction"}),
    "vllm": ("/v1/rerank", {"model", "query", "documents", "top_n"}),
    "vllm-score": ("/score", {"model", "text_1", "text_2"}),
    "cohere": ("/v2/rerank", {"model", "query", "documents", "top_n"}),
    "jina": ("/v1/rerank", {"model", "query", "documents", "top_n", "return_documents"}),
    "tei": ("/rerank", {"query", "texts", "truncate", "return_text"}),
    "infinity": ("/rerank", {"model", "query", "documents", "top_n", "return_documents"}),
}


@pytest.mark.parametrize("api", sorted(DIALECTS))
def test_every_dialect_maps_scores_by_index(server: FakeServer, api: str) -> None:
    with Reranker.remote(server.url, "m", api=api) as rr:
        scores = rr.score(QUERY, DOCS)
        results = rr.rerank(QUERY, DOCS, top_n=4)
    path, body_keys = EXPECTED_BODY_KEYS[api]
    sent_path, _, body = server.requests[0]
    assert sent_path == path
    assert set(body) == body_keys
    sent_docs = body.get("documents") or body.get("texts") or body.get("text_2")
    assert scores == [vendor_score(t) for t in sent_docs]  # input order, whatever the server's
    assert [r.index for r in results] == sorted(range(10), key=lambda i: (-scores[i], i))[:4]
    assert [r.document for r in results] == [DOCS[r.index] for r in results]


def test_vllm_gets_the_qwen3_template_and_cohere_does_not(server: FakeServer) -> None:
    with Reranker.remote(server.url, api="vllm", instruction="Find diets") as rr:
        rr.score(QUERY, DOCS[:2])
    body = server.requests[-1][2]
    assert body["query"] == PREFIX + f"<Instruct>: Find diets\n<Query>: {QUERY}\n"
    assert body["documents"] == [f"<Document>: {d}{SUFFIX}" for d in DOCS[:2]]
    assert "model" not in body
    with Reranker.remote(server.url, "m", api="cohere") as rr:
        rr.score(QUERY, DOCS[:2])
        with pytest.raises(InvalidInputError, match="takes no instruction"):
            rr.score(QUERY, DOCS[:2], instruction="Find diets")
    assert server.requests[-1][2]["query"] == QUERY
    assert server.requests[-1][2]["documents"] == DOCS[:2]


def test_long_lists_are_split_sent_concurrently_and_merged(server: FakeServer) -> None:
    server.behaviour = lambda p, b, n: ("stall", 0.2, ("json", 200, documented_answer(p, b)))
    with Reranker.remote(
        server.url, api="cohere", max_documents_per_request=3, max_concurrency=2
    ) as rr:
        scores = rr.score(QUERY, DOCS)
    assert sorted(len(b["documents"]) for _, _, b in server.requests) == [1, 3, 3, 3]
    assert scores == [vendor_score(d) for d in DOCS]
    assert server.max_in_flight == 2  # two at a time: concurrent, and never more than allowed


def test_tei_requests_respect_its_32_document_limit(server: FakeServer) -> None:
    docs = [f"text {i}" for i in range(70)]
    with Reranker.remote(server.url, api="tei") as rr:
        assert rr.score(QUERY, docs) == [vendor_score(d) for d in docs]
    assert sorted(len(b["texts"]) for _, _, b in server.requests) == [6, 32, 32]


def _refuse_over(limit: int) -> Behaviour:
    """TEI's answer to a request over its ``--max-client-batch-size``."""

    def behaviour(path: str, body: dict[str, Any], n: int) -> Action:
        count = len(body["texts"])
        if count > limit:
            error = f"batch size {count} > maximum allowed batch size {limit}"
            return ("json", 413, {"error": error, "error_type": "Validation"})
        return ("json", 200, documented_answer(path, body))

    return behaviour


@pytest.mark.parametrize("run", ["sync", "async"])
def test_a_413_is_sent_again_in_halves_and_the_limit_is_learned(
    server: FakeServer, run: str, caplog: pytest.LogCaptureFixture
) -> None:
    server.behaviour = _refuse_over(8)
    docs = [f"text {i}" for i in range(20)]
    with Reranker.remote(server.url, api="tei") as rr:
        score = rr.score if run == "sync" else lambda q, d: asyncio.run(rr.ascore(q, d))
        assert score(QUERY, docs) == [vendor_score(d) for d in docs]
        sizes = [len(b["texts"]) for _, _, b in server.requests]
        assert sorted(sizes) == [5, 5, 5, 5, 10, 10, 20]  # 20 and 10 refused
        del server.requests[:]
        assert score(QUERY, docs) == [vendor_score(d) for d in docs]
    assert [len(b["texts"]) for _, _, b in server.requests] == [5, 5, 5, 5]  # no 413 now
    assert "sending at most 5 per request" in caplog.text


def test_a_413_for_one_document_raises_and_teaches_nothing(server: FakeServer) -> None:
    def refuse_long(path: str, body: dict[str, Any], n: int) -> Action:
        if any(len(t) > 100 for t in body["documents"]):
            return ("json", 413, {"message": "body over 1000 bytes"})
        return ("json", 200, documented_answer(path, body))

    server.behaviour = refuse_long
    docs = [*DOCS[:3], "x" * 500]
    with Reranker.remote(server.url, api="cohere") as rr:
        with pytest.raises(RemoteStatusError, match="body over 1000 bytes") as info:
            rr.score(QUERY, docs)
        assert info.value.status_code == 413
        # 4 refused, 2 + 2: the first pair went through, the second refused, then 1 + 1
        assert [len(b["documents"]) for _, _, b in server.requests] == [4, 2, 2, 1, 1]
        del server.requests[:]
        assert rr.score(QUERY, DOCS) == [vendor_score(d) for d in DOCS]
    assert [len(b["documents"]) for _, _, b in server.requests] == [len(DOCS)]


def test_api_key_is_sent_as_bearer(server: FakeServer) -> None:
    with Reranker.remote(server.url, api="jina", api_key="s3cret") as rr:
        rr.score(QUERY, DOCS[:1])
    assert server.requests[0][1]["Authorization"] == "Bearer s3cret"


def test_retry_after_is_honoured_on_429(server: FakeServer) -> None:
    server.behaviour = lambda p, b, n: (
        ("json", 429, {"error": "slow down"}, {"Retry-After": "1"})
        if n == 1
        else ("json", 200, documented_answer(p, b))
    )
    with Reranker.remote(server.url, api="cohere") as rr:
        start = time.perf_counter()
        scores = rr.score(QUERY, DOCS)
    assert time.perf_counter() - start >= 1.0
    assert len(server.requests) == 2
    assert scores == [vendor_score(d) for d in DOCS]


def test_500_then_200_succeeds(server: FakeServer) -> None:
    server.behaviour = lambda p, b, n: (
        ("raw", 500, "oops") if n == 1 else ("json", 200, documented_answer(p, b))
    )
    with Reranker.remote(server.url, api="infinity") as rr:
        assert rr.score(QUERY, DOCS) == [vendor_score(d) for d in DOCS]
    assert len(server.requests) == 2


def test_persistent_503_gives_up_with_a_retryable_status_error(server: FakeServer) -> None:
    server.behaviour = lambda p, b, n: ("raw", 503, "busy", {"Retry-After": "0"})
    with (
        Reranker.remote(server.url, api="cohere", max_retries=2) as rr,
        pytest.raises(RemoteStatusError) as info,
    ):
        rr.score(QUERY, DOCS)
    assert info.value.status_code == 503
    assert info.value.retryable
    assert len(server.requests) == 3


def test_other_4xx_is_not_retried(server: FakeServer) -> None:
    server.behaviour = lambda p, b, n: ("json", 400, {"error": "bad model name"})
    with (
        Reranker.remote(server.url, api="cohere") as rr,
        pytest.raises(RemoteStatusError, match="bad model name") as info,
    ):
        rr.score(QUERY, DOCS)
    assert info.value.status_code == 400
    assert not info.value.retryable
    assert "bad model name" in info.value.body
    assert len(server.requests) == 1


def test_dropped_connections_are_retried_then_raise(server: FakeServer) -> None:
    server.behaviour = lambda p, b, n: ("drop",)
    with (
        Reranker.remote(server.url, api="cohere", max_retries=2) as rr,
        pytest.raises(RemoteConnectionError) as info,
    ):
        rr.score(QUERY, DOCS)
    assert info.value.retryable
    assert len(server.requests) == 3
    server.behaviour = lambda p, b, n: (
        ("drop",) if n <= 4 else ("json", 200, documented_answer(p, b))
    )
    with Reranker.remote(server.url, api="cohere", max_retries=2) as rr:
        assert rr.score(QUERY, DOCS) == [vendor_score(d) for d in DOCS]


def test_a_stalled_server_times_out(server: FakeServer) -> None:
    server.behaviour = lambda p, b, n: ("stall", 1.5, ("json", 200, documented_answer(p, b)))
    with Reranker.remote(server.url, api="cohere", timeout=0.3, max_retries=0) as rr:
        start = time.perf_counter()
        with pytest.raises(RemoteTimeoutError):
            rr.score(QUERY, DOCS)
    assert time.perf_counter() - start < 1.2


def _with_results(results: list[dict[str, Any]]) -> Behaviour:
    return lambda p, b, n: ("json", 200, {"results": results})


@pytest.mark.parametrize(
    ("behaviour", "match"),
    [
        (lambda p, b, n: ("raw", 200, "{not json"), "invalid JSON"),
        (lambda p, b, n: ("json", 200, {"data": []}), "'results' list"),
        (_with_results([{"index": 0, "relevance_score": 0.5}]), "1 results for 3"),
        (
            _with_results([{"index": i % 2, "relevance_score": 0.5} for i in range(3)]),
            "appears twice",
        ),
        (
            _with_results([{"index": i + 1, "relevance_score": 0.5} for i in range(3)]),
            "bad index 3",
        ),
        (_with_results([{"index": i, "relevance_score": "high"} for i in range(3)]), "bad score"),
        (_with_results([{"index": i, "relevance_score": math.nan} for i in range(3)]), "bad score"),
        (_with_results([{"index": True, "relevance_score": 0.1}] * 3), "bad index"),
        (_with_results([[0, 0.5]] * 3), "not an object"),
    ],
)
def test_untrustworthy_answers_are_rejected(
    server: FakeServer, behaviour: Behaviour, match: str
) -> None:
    server.behaviour = behaviour
    with (
        Reranker.remote(server.url, api="cohere") as rr,
        pytest.raises(InvalidResponseError, match=match),
    ):
        rr.score(QUERY, DOCS[:3])
    assert len(server.requests) == 1  # never retried


def test_async_requests_run_concurrently_and_stay_in_order(server: FakeServer) -> None:
    server.behaviour = lambda p, b, n: ("stall", 0.1, ("json", 200, documented_answer(p, b)))

    async def run(rr: Reranker) -> list[list[float]]:
        return await asyncio.gather(*(rr.ascore(QUERY, DOCS[i:]) for i in range(8)))

    with Reranker.remote(server.url, api="cohere", max_concurrency=8) as rr:
        answers = asyncio.run(run(rr))
        again = asyncio.run(run(rr))  # a second event loop gets its own client
    for i, scores in enumerate(answers):
        assert scores == [vendor_score(d) for d in DOCS[i:]]
    assert again == answers
    assert server.max_in_flight >= 4  # the eight 0.1 s requests overlapped


def test_user_transport_is_used_sync_and_async() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json=documented_answer("/v2/rerank", json.loads(request.content))
        )

    with Reranker.remote(
        "http://rerank.test", api="cohere", transport=httpx.MockTransport(handler)
    ) as rr:
        assert rr.score(QUERY, DOCS) == [vendor_score(d) for d in DOCS]
        results = asyncio.run(rr.arerank(QUERY, DOCS, top_n=2))
    assert len(results) == 2


def test_bad_settings_and_closed_engine(server: FakeServer) -> None:
    for kwargs, match in (
        ({"api": "openai"}, "unknown api"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_documents_per_request": 0}, "max_documents_per_request"),
        ({"timeout": 0}, "timeout"),
    ):
        with pytest.raises(ConfigurationError, match=match):
            Reranker.remote(server.url, **kwargs)
    with pytest.raises(ConfigurationError, match="base_url"):
        Reranker.remote("ftp://x")
    rr = Reranker.remote(server.url, api="cohere")
    rr.close()
    with pytest.raises(EngineError, match="closed"):
        rr.score(QUERY, DOCS)
    assert rr.score(QUERY, []) == []  # nothing to send


class CountingTransport(httpx.AsyncBaseTransport):
    """Real HTTP transports (one per event loop: connections belong to one) that count the
    requests handed to them at once."""

    def __init__(self) -> None:
        self.real: dict[asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport] = {}
        self.now = self.most = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        real = self.real.setdefault(asyncio.get_running_loop(), httpx.AsyncHTTPTransport())
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            response = await real.handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.now -= 1


@pytest.mark.parametrize(("limit", "own_transport"), [(2, True), (6, True), (6, False)])
def test_max_concurrency_holds_over_many_calls(
    server: FakeServer, limit: int, own_transport: bool
) -> None:
    """Ten callers, ``limit`` requests in flight over all of them: the others wait at the
    engine's gate, also when the async requests spread over several small httpx clients
    (6 > 4 connections per client)."""
    server.behaviour = lambda p, b, n: ("stall", 0.1, ("json", 200, documented_answer(p, b)))
    counted = CountingTransport() if own_transport else None

    async def run(rr: Reranker) -> list[list[float]]:
        return await asyncio.gather(*(rr.ascore(QUERY, [DOCS[i]]) for i in range(10)))

    with Reranker.remote(
        server.url,
        api="cohere",
        max_concurrency=limit,
        transport=counted,
    ) as rr:
        answers = asyncio.run(run(rr))
        with ThreadPoolExecutor(10) as pool:
            threaded = list(pool.map(lambda i: rr.score(QUERY, [DOCS[i]]), range(10)))
    assert answers == threaded == [[vendor_score(d)] for d in DOCS]
    assert len(server.requests) == 20
    assert server.max_in_flight == limit
    if counted is not None:
        assert counted.most == limit
