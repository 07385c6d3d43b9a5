"""The remote reranker's lifecycle on a real ``qwen3-rerank serve``: ``aclose``, ``async with``
and ``close`` inside an event loop close every connection; and Retry-After on a real server."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen3_rerank import EngineError, RemoteStatusError, Reranker
from tests.core.test_http_engine import DOCS, QUERY, FakeServer, documented_answer, vendor_score
from tests.server.serving import KEY, start_server, stop


@pytest.fixture(scope="module")
def served(tiny_model: Path) -> Iterator[str]:
    proc, url = start_server(tiny_model)
    yield url
    stop(proc)


def open_connections(url: str) -> int:
    """This machine's established TCP connections to the server's port, read from the kernel
    (``/proc/net/tcp``): the client's side of each connection has it as the remote port."""
    port = int(url.rsplit(":", 1)[1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port, state = int(fields[2].split(":")[1], 16), fields[3]
        count += remote_port == port and state == "01"  # 01: ESTABLISHED
    return count


async def wait_until_closed(url: str) -> int:
    for _ in range(100):
        if open_connections(url) == 0:
            return 0
        await asyncio.sleep(0.05)
    return open_connections(url)


def test_async_with_closes_every_connection(served: str) -> None:
    async def main() -> None:
        async with Reranker.remote(served, api="qwen3", api_key=KEY, max_concurrency=8) as rr:
            results = await asyncio.gather(*(rr.arerank(QUERY, DOCS) for _ in range(8)))
            assert open_connections(served) >= 1
        assert open_connections(served) == 0  # closed before `async with` returns
        assert len(results) == 8
        with pytest.raises(EngineError, match="closed"):
            await rr.ascore(QUERY, DOCS)

    asyncio.run(main())


def test_aclose_after_sync_and_async_calls(served: str) -> None:
    async def main() -> None:
        rr = Reranker.remote(served, api="qwen3", api_key=KEY)
        from_thread = await asyncio.to_thread(rr.score, QUERY, DOCS)  # the engine's own loop
        assert await rr.ascore(QUERY, DOCS) == pytest.approx(from_thread, abs=1e-6)
        await rr.aclose()
        assert open_connections(served) == 0

    asyncio.run(main())


def test_close_inside_an_event_loop_closes_the_loop_s_connections(served: str) -> None:
    async def main() -> int:
        with Reranker.remote(served, api="qwen3", api_key=KEY) as rr:  # sync close, in a loop
            await rr.ascore(QUERY, DOCS)
            assert open_connections(served) >= 1
        return await wait_until_closed(served)

    assert asyncio.run(main()) == 0


def test_sync_close_closes_every_connection(served: str) -> None:
    with Reranker.remote(served, api="qwen3", api_key=KEY) as rr:
        scores = rr.score(QUERY, DOCS)
        assert open_connections(served) >= 1
    assert open_connections(served) == 0
    assert len(scores) == len(DOCS)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer()
    yield s
    s.close()


@pytest.mark.parametrize("run", ["sync", "async"])
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_waited_out(server: FakeServer, status: int, run: str) -> None:
    arrivals: list[float] = []

    def busy_twice(path: str, body: dict[str, object], n: int) -> tuple[object, ...]:
        arrivals.append(time.monotonic())
        if n <= 2:
            return ("json", status, {"error": "busy"}, {"Retry-After": "1"})
        return ("json", 200, documented_answer(path, body))

    server.behaviour = busy_twice
    with Reranker.remote(server.url, api="cohere", max_retries=2) as rr:
        scores = rr.score(QUERY, DOCS) if run == "sync" else asyncio.run(rr.ascore(QUERY, DOCS))
    assert scores == [vendor_score(d) for d in DOCS]
    assert len(arrivals) == 3
    assert arrivals[1] - arrivals[0] >= 1.0
    assert arrivals[2] - arrivals[1] >= 1.0


def test_retry_after_as_an_http_date_and_giving_up(server: FakeServer) -> None:
    arrivals: list[float] = []

    def unavailable(path: str, body: dict[str, object], n: int) -> tuple[object, ...]:
        arrivals.append(time.monotonic())
        when = email.utils.formatdate(time.time() + 2, usegmt=True)
        return ("json", 503, {"error": "maintenance"}, {"Retry-After": when})

    server.behaviour = unavailable
    with (
        Reranker.remote(server.url, api="cohere", max_retries=1) as rr,
        pytest.raises(RemoteStatusError, match="maintenance") as info,
    ):
        rr.score(QUERY, DOCS)
    assert info.value.status_code == 503
    assert len(arrivals) == 2  # one try and one retry
    # an HTTP date has whole seconds: "in 2 s" is at least 1 s away
    assert arrivals[1] - arrivals[0] >= 1.0
