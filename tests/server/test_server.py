"""`qwen3-rerank serve` as a real process on 127.0.0.1, driven by the real client and raw HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from qwen3_rerank import Reranker, __version__
from qwen3_rerank.errors import RemoteStatusError

from .serving import (
    ALLOWED_ORIGIN,
    AUTH,
    DOCS,
    KEY,
    QUERY,
    assert_error,
    metric,
    requests_counted,
    start_server,
    stop,
)


@pytest.mark.parametrize(
    ("api", "options"),
    [
        ("qwen3", {}),
        ("cohere", {}),
        ("jina", {}),
        ("infinity", {}),
        ("vllm", {"apply_template": False}),
        # a vLLM-style client wraps the input in the Qwen3 template: scored once all the same
        ("vllm", {}),
        ("vllm-score", {}),
        ("tei", {}),
    ],
)
def test_real_client_in_each_dialect_equals_in_process(
    served: str, reranker: Reranker, api: str, options: dict[str, object]
) -> None:
    with Reranker.remote(served, api=api, api_key=KEY, **options) as remote:  # type: ignore[arg-type]
        got = remote.score(QUERY, DOCS)
        ranked = remote.rerank(QUERY, DOCS, top_n=3)
    want = reranker.score(QUERY, DOCS)
    assert got == pytest.approx(want, abs=1e-5)
    assert [r.index for r in ranked] == [r.index for r in reranker.rerank(QUERY, DOCS, top_n=3)]


KEY_VARIABLES = ("QWEN3_RERANK_API_KEY", "VLLM_API_KEY", "CO_API_KEY", "JINA_API_KEY")


@pytest.mark.parametrize(
    ("api", "variable"),
    [
        ("qwen3", "QWEN3_RERANK_API_KEY"),
        ("vllm", "VLLM_API_KEY"),
        ("cohere", "CO_API_KEY"),
        ("jina", "JINA_API_KEY"),
    ],
)
def test_without_api_key_the_client_sends_its_apis_key_variable(
    served: str, reranker: Reranker, monkeypatch: pytest.MonkeyPatch, api: str, variable: str
) -> None:
    """The key comes from the variable that API's own tools read (ours: the one `serve`
    reads); only that API's: another API's variable is never sent. A key passed wins."""
    for name in KEY_VARIABLES:
        monkeypatch.setenv(name, "not-this-one")
    monkeypatch.setenv(variable, KEY)
    with Reranker.remote(served, api=api) as remote:  # type: ignore[arg-type]
        assert remote.score(QUERY, DOCS) == pytest.approx(reranker.score(QUERY, DOCS), abs=1e-5)
    for refused_with in ({"api_key": "wrong"}, {}):  # a wrong key passed; then no variable
        if not refused_with:
            monkeypatch.delenv(variable)
        with (
            Reranker.remote(served, api=api, **refused_with) as remote,  # type: ignore[arg-type]
            pytest.raises(RemoteStatusError) as refused,
        ):
            remote.score(QUERY, DOCS)
        assert refused.value.status_code == 401


def test_the_client_learns_the_servers_document_limit(served: str, reranker: Reranker) -> None:
    """The server takes 50 documents a request; the client is not told, and learns it from
    the server's 413s: 120 refused, 60 refused, then 30 at a time."""
    docs = [f"{DOCS[i % len(DOCS)]} ({i})" for i in range(120)]

    def counts() -> tuple[int, int]:
        return requests_counted(served, 200), requests_counted(served, 413)

    with Reranker.remote(served, api="qwen3", api_key=KEY) as remote:
        before = counts()
        assert remote.score(QUERY, docs) == pytest.approx(reranker.score(QUERY, docs), abs=1e-5)
        after = counts()
        assert (after[0] - before[0], after[1] - before[1]) == (4, 3)
        ranked = remote.rerank(QUERY, docs, top_n=5)
    again = counts()
    assert (again[0] - after[0], again[1] - after[1]) == (4, 0)  # 30 at a time, no 413
    assert [r.index for r in ranked] == [r.index for r in reranker.rerank(QUERY, docs, top_n=5)]


def test_instruction_reaches_the_server(served: str, reranker: Reranker) -> None:
    instruction = "Find dessert recipes"
    with Reranker.remote(served, api="qwen3", api_key=KEY) as remote:
        got = asyncio.run(remote.ascore(QUERY, DOCS, instruction=instruction))
    assert got == pytest.approx(reranker.score(QUERY, DOCS, instruction=instruction), abs=1e-5)


def test_response_shape_top_n_and_document_objects(served: str, reranker: Reranker) -> None:
    body = {"query": QUERY, "documents": [{"text": d} for d in DOCS], "top_n": 2}
    answer = httpx.post(served + "/v2/rerank", json=body, headers=AUTH).json()
    expected = reranker.rerank(QUERY, DOCS, top_n=2)
    assert [r["index"] for r in answer["results"]] == [r.index for r in expected]
    assert answer["results"][0]["document"] == {"text": DOCS[expected[0].index]}
    assert answer["id"].startswith("rerank-")
    pairs = [reranker.engine.encoder.encode(QUERY, [d], reranker.instruction) for d in DOCS]  # type: ignore[attr-defined]
    tokens = sum(p.pair_length(0) for p in pairs)
    assert answer["usage"] == {
        "prompt_tokens": tokens,
        "total_tokens": tokens,
        "total_documents": 5,
    }
    bare = httpx.post(
        served + "/rerank",
        json={"query": QUERY, "documents": DOCS, "return_documents": False},
        headers=AUTH,
    ).json()
    assert len(bare["results"]) == 5
    assert "document" not in bare["results"][0]
    empty = httpx.post(served + "/v1/rerank", json={"query": QUERY, "documents": []}, headers=AUTH)
    assert empty.json()["results"] == []


def test_oversized_body_is_413(served: str) -> None:
    body = json.dumps({"query": "q", "documents": ["x" * (17 * 2**20)]})
    headers = {**AUTH, "Content-Type": "application/json"}
    answer = httpx.post(served + "/v1/rerank", content=body, headers=headers, timeout=30)
    assert_error(answer, 413, "body over the limit")
    assert httpx.get(served + "/health").status_code == 200


def test_models_and_metrics(served: str, tiny_model: Path) -> None:
    httpx.post(served + "/v1/rerank", json={"query": QUERY, "documents": DOCS}, headers=AUTH)
    assert httpx.get(served + "/v1/models").status_code == 401
    models = httpx.get(served + "/v1/models", headers=AUTH).json()
    # served as the model id and its last path part
    assert [m["id"] for m in models["data"]] == [str(tiny_model), tiny_model.name]
    assert httpx.get(served + "/version").status_code == 401
    assert httpx.get(served + "/version", headers=AUTH).json() == {"version": __version__}
    assert httpx.get(served + "/openapi.json").json()["info"]["version"] == __version__
    text = httpx.get(served + "/metrics", headers=AUTH).text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert float(lines['qwen3_rerank_requests_total{code="200",route="/v1/rerank"}']) >= 1
    assert float(lines["qwen3_rerank_documents_total"]) >= 5
    assert float(lines["qwen3_rerank_prompt_tokens_total"]) > 0
    assert float(lines['qwen3_rerank_request_seconds_count{route="/v1/rerank"}']) >= 1
    assert "qwen3_rerank_queue_depth" in lines
    assert "qwen3_rerank_cancelled_requests_total" in lines
    assert float(lines["qwen3_rerank_batch_requests_count"]) >= 1


@dataclass
class Load:
    """What one request shape gave: sequential and 200-concurrent throughput over HTTP."""

    sequential_rps: float
    concurrent_rps: float
    engine_calls: int
    latencies: list[float]
    engine_gain: float  # the engine's own batched / one-by-one throughput, in process

    @property
    def gain(self) -> float:
        return self.concurrent_rps / self.sequential_rps


def drive(served: str, reranker: Reranker, documents: int) -> Load:
    """40 requests one at a time, then 200 at once, through one real client; every answer
    checked against the in-process engine."""
    queries = [f"question {i} about plants and light" for i in range(200)]
    lists = [
        [f"passage {i}.{j} on photosynthesis in leaves" for j in range(documents)]
        for i in range(200)
    ]
    start = time.perf_counter()
    expected = [reranker.score(queries[i], lists[i]) for i in range(40)]
    engine_alone = 40 / (time.perf_counter() - start)
    start = time.perf_counter()
    expected += [
        [r.score for r in sorted(res, key=lambda r: r.index)]
        for res in reranker.rerank_batch(queries[40:], lists[40:])
    ]
    engine_batched = 160 / (time.perf_counter() - start)

    async def timed(remote: Reranker, i: int) -> tuple[list[float], float]:
        start = time.perf_counter()
        scores = await remote.ascore(queries[i], lists[i])
        return scores, time.perf_counter() - start

    def engine_calls() -> int:
        return metric(served, "qwen3_rerank_batch_requests_count")

    async def run(
        remote: Reranker, concurrent: bool
    ) -> tuple[list[list[float]], list[float], float, int]:
        """Scores, latencies, seconds and engine calls of 200 requests at once, or of 40
        one at a time."""
        # this event loop's connections, all opened before timing
        await asyncio.gather(*(remote.ascore(QUERY, DOCS) for _ in range(32)))
        calls = engine_calls()
        start = time.perf_counter()
        if concurrent:
            out = await asyncio.gather(*(timed(remote, i) for i in range(200)))
        else:
            out = [await timed(remote, i) for i in range(40)]
        elapsed = time.perf_counter() - start
        return [s for s, _ in out], [t for _, t in out], elapsed, engine_calls() - calls

    with Reranker.remote(served, api="qwen3", api_key=KEY, max_concurrency=32) as remote:
        one_by_one, _, seconds, _ = asyncio.run(run(remote, concurrent=False))
        together, latencies, concurrent_seconds, calls = asyncio.run(run(remote, concurrent=True))
    for got, want in zip(one_by_one + together, expected[:40] + expected, strict=True):
        assert got == pytest.approx(want, abs=1e-5)
    return Load(
        40 / seconds,
        200 / concurrent_seconds,
        calls,
        sorted(latencies),
        engine_batched / engine_alone,
    )


def test_200_concurrent_requests_are_batched_and_all_correct(
    served: str, reranker: Reranker
) -> None:
    """200 requests at once go to the engine in far fewer calls, and every answer is the
    in-process engine's."""
    loads = {n: drive(served, reranker, n) for n in (1, 16)}
    for n, load in loads.items():
        print(
            f"\n{n} document(s) per request over HTTP: sequential {load.sequential_rps:.0f} "
            f"req/s; 200 concurrent {load.concurrent_rps:.0f} req/s ({load.gain:.2f}x) in "
            f"{load.engine_calls} engine calls, p50 "
            f"{statistics.median(load.latencies) * 1000:.0f} ms, p99 "
            f"{load.latencies[197] * 1000:.0f} ms; the engine alone gains "
            f"{load.engine_gain:.2f}x from batching the same requests in process"
        )
        assert load.engine_calls < 150  # requests that arrived together went together
    # No throughput bound here: on a shared 2-core machine it measures the neighbours; the
    # numbers above are printed, and `qwen3-rerank bench --url` measures them properly.


def test_overload_gets_503_with_retry_after_then_graceful_shutdown(tiny_model: Path) -> None:
    proc, url = start_server(tiny_model, "--max-queue", "1", "--max-documents", "200")
    docs = ["a long passage about leaves and light " * 30] * 100

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.post("/v1/rerank", json={"query": f"q{i}", "documents": docs})
                        for i in range(12)
                    )
                )
            )

    try:
        answers = asyncio.run(flood())
        busy = [a for a in answers if a.status_code == 503]
        for answer in busy:
            assert_error(answer, 503, "queue full")
        ok = [a for a in answers if a.status_code == 200]
        assert busy
        assert ok
        assert len(busy) + len(ok) == 12
        assert all(a.headers["Retry-After"] == "1" for a in busy)
        assert all(len(a.json()["results"]) == 100 for a in ok)
        assert httpx.get(url + "/health").status_code == 200

        async def slow_then_stop() -> httpx.Response:
            async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as client:
                request = asyncio.create_task(
                    client.post("/v1/rerank", json={"query": "q", "documents": docs})
                )
                await asyncio.sleep(0.3)
                proc.send_signal(signal.SIGTERM)  # in-flight work must still finish
                return await request

        last = asyncio.run(slow_then_stop())
        assert last.status_code == 200
        assert len(last.json()["results"]) == 100
        # uvicorn finishes in-flight work, then re-raises SIGTERM for the conventional status
        assert proc.wait(timeout=40) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_bench_times_a_real_server(served: str, tiny_model: Path) -> None:
    """``qwen3-rerank bench --url``: the workloads over HTTP, split to the server's limit."""
    before = metric(served, "qwen3_rerank_documents_total")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qwen3_rerank.cli",
            "bench",
            "--url",
            served,
            "--model",
            str(tiny_model),
            "--api-key",
            KEY,
            "--max-documents",
            "50",
            "-w",
            "rag100x256",
            "--passes",
            "1",
            "--latency-queries",
            "2",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["engine"] == served
    got = report["workloads"]["rag100x256"]
    assert got["pairs"] == 400
    assert got["pairs_per_s"] > 0
    assert got["torch_peak_gib"] is None
    # a warm-up and one pass of 4 queries, 2 warm-up queries and 2 timed ones alone: 12 x 100
    # documents, each query in two requests of 50 (the server takes no more)
    assert metric(served, "qwen3_rerank_documents_total") - before == 1200


def test_cli_rerank_on_a_real_server(served: str, reranker: Reranker, tmp_path: Path) -> None:
    """``qwen3-rerank rerank --url``: the documents of a file ranked by the server, 60 of them
    against its limit of 50 (learned from its 413), as the local engine ranks them."""
    docs = [f"{DOCS[i % len(DOCS)]} ({i})" for i in range(60)]
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(docs) + "\n", encoding="utf-8")
    out = subprocess.run(
        [
            *(sys.executable, "-m", "qwen3_rerank.cli", "rerank", "--url", served),
            *("--api-key", KEY, "-q", QUERY, "--top-n", "5", str(path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    expected = reranker.rerank(QUERY, docs, top_n=5)
    assert [line["index"] for line in lines] == [r.index for r in expected]
    assert [line["score"] for line in lines] == pytest.approx([r.score for r in expected], abs=1e-5)
    assert [line["document"] for line in lines] == [r.document for r in expected]


def test_browser_pages_of_allowed_origins_may_call_the_api(served: str, tiny_model: Path) -> None:
    preflight = {
        "Origin": ALLOWED_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    answer = httpx.options(served + "/v1/rerank", headers=preflight)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()
    body = {"query": QUERY, "documents": DOCS}
    ranked = httpx.post(
        served + "/v1/rerank", json=body, headers={**AUTH, "Origin": ALLOWED_ORIGIN}
    )
    assert ranked.status_code == 200
    assert ranked.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    # errors too, so that the page can read them
    refused = httpx.post(served + "/v1/rerank", json=body, headers={"Origin": ALLOWED_ORIGIN})
    assert_error(refused, 401, "API key")
    assert refused.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    # another origin gets no permission, and a bad preflight is refused
    other = {**preflight, "Origin": "https://elsewhere.example.org"}
    assert httpx.options(served + "/v1/rerank", headers=other).status_code == 400
    stranger = httpx.post(
        served + "/v1/rerank", json=body, headers={**AUTH, "Origin": other["Origin"]}
    )
    assert "access-control-allow-origin" not in stranger.headers
    # without --allowed-origins, no page may
    proc, url = start_server(tiny_model)
    try:
        closed = httpx.options(url + "/v1/rerank", headers=preflight)
        assert "access-control-allow-origin" not in closed.headers
        plain = httpx.post(
            url + "/v1/rerank", json=body, headers={**AUTH, "Origin": ALLOWED_ORIGIN}
        )
        assert plain.status_code == 200
        assert "access-control-allow-origin" not in plain.headers
    finally:
        stop(proc)
