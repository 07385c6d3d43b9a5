"""No request can hurt another: a bad request among good ones fails alone, an engine error
stays with its request, clients that hang up are not scored, shutdown answers 503."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qwen3_rerank import Reranker
from qwen3_rerank.engines.base import ScoreRequest
from qwen3_rerank.errors import InvalidInputError
from qwen3_rerank.server.scheduler import BatchScheduler

from .serving import AUTH, DOCS, KEY, QUERY, assert_error, metric, start_server

LONG_QUERY = "why " * 9000  # past max_length=8192 tokens with the template
# a request that keeps the engine busy for a few seconds
LONG_DOCS = [f"{i} a long passage about leaves, roots and light " * 40 for i in range(2000)]


def test_one_over_long_query_among_concurrent_requests_fails_alone(
    served: str, reranker: Reranker
) -> None:
    queries = [f"{QUERY} ({i})" for i in range(16)]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=served, headers=AUTH, timeout=120) as client:
            posts = [
                client.post("/v1/rerank", json={"query": q, "documents": DOCS}) for q in queries
            ]
            posts.insert(
                8, client.post("/v1/rerank", json={"query": LONG_QUERY, "documents": DOCS})
            )
            return list(await asyncio.gather(*posts))

    answers = asyncio.run(burst())
    poisoned = answers.pop(8)
    assert_error(poisoned, 400, "shorten the query")
    assert LONG_QUERY[:40] not in str([a.text for a in answers])
    for query, answer in zip(queries, answers, strict=True):
        assert answer.status_code == 200, answer.text
        got = sorted(answer.json()["results"], key=lambda r: r["index"])
        want = reranker.score(query, DOCS)
        assert [r["relevance_score"] for r in got] == pytest.approx(want, abs=1e-5)
    assert httpx.get(served + "/health").status_code == 200


async def test_an_engine_error_fails_only_its_own_request(reranker: Reranker) -> None:
    """Past the server's validation nothing should fail, but if the engine does, the batch is
    scored again request by request: here the real engine refuses one over-long query."""
    scheduler = BatchScheduler(reranker.engine)
    scheduler.start()
    try:
        good = [ScoreRequest(f"{QUERY} {i}", DOCS, reranker.instruction) for i in range(4)]
        bad = ScoreRequest(LONG_QUERY, DOCS, reranker.instruction)
        futures = [scheduler.submit(r) for r in (*good[:2], bad, *good[2:])]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await scheduler.stop()
    failed = outcomes.pop(2)
    assert isinstance(failed, InvalidInputError)
    for request, outcome in zip(good, outcomes, strict=True):
        assert not isinstance(outcome, BaseException)
        want = reranker.score(request.query, DOCS)
        assert outcome.scores == pytest.approx(want, abs=1e-5)


@pytest.fixture(scope="module")
def own_server(tiny_model: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A server of these tests alone (its metrics start at zero; the last test stops it), its
    key from the environment."""
    proc, url = start_server(
        tiny_model,
        *("--max-documents", "2000", "--shutdown-grace", "1"),
        key=False,
        env={"QWEN3_RERANK_API_KEY": KEY},
    )
    yield proc, url
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_clients_that_hang_up_are_not_scored(
    own_server: tuple[subprocess.Popen[bytes], str], reranker: Reranker
) -> None:
    _, url = own_server
    assert_error(httpx.get(url + "/v1/models"), 401, "API key")  # the key from the environment

    async def abandon() -> None:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as patient:
            # keeps the engine busy while the impatient clients below give up
            blocker = asyncio.create_task(
                patient.post("/v1/rerank", json={"query": "q", "documents": LONG_DOCS})
            )
            while not metric(url, "qwen3_rerank_batch_requests_count"):  # not in the engine yet
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=0.3) as hasty:
                gave_up = await asyncio.gather(
                    *(
                        hasty.post("/v1/rerank", json={"query": f"q{i}", "documents": DOCS})
                        for i in range(20)
                    ),
                    return_exceptions=True,
                )
            assert all(isinstance(g, httpx.TimeoutException) for g in gave_up)
            assert (await blocker).status_code == 200

    asyncio.run(abandon())
    fresh = httpx.post(url + "/v1/rerank", json={"query": QUERY, "documents": DOCS}, headers=AUTH)
    assert fresh.status_code == 200
    got = sorted(fresh.json()["results"], key=lambda r: r["index"])
    assert [r["relevance_score"] for r in got] == pytest.approx(
        reranker.score(QUERY, DOCS), abs=1e-5
    )
    # only the blocker and the fresh request were scored; the hung-up requests were dropped and
    # counted (all those the server saw before their client left)
    assert metric(url, "qwen3_rerank_documents_total") == len(LONG_DOCS) + len(DOCS)
    assert 10 <= metric(url, "qwen3_rerank_cancelled_requests_total") <= 20


def test_shutdown_past_the_grace_period_answers_503(
    own_server: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = own_server

    async def stop_while_scoring() -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as client:
            first = asyncio.create_task(
                client.post("/v1/rerank", json={"query": "q", "documents": LONG_DOCS})
            )
            await asyncio.sleep(0.5)
            waiting = asyncio.create_task(
                client.post("/v1/rerank", json={"query": "q2", "documents": LONG_DOCS})
            )
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            await first
            return await waiting

    answer = asyncio.run(stop_while_scoring())
    assert_error(answer, 503, "shutting down")
    assert answer.headers["Retry-After"] == "1"
