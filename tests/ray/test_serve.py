"""`qwen3-rerank serve --ray` on the tests' local Ray cluster: 2 replicas, real HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qwen3_rerank import Reranker
from qwen3_rerank.ray.serve import REPLICA_HEADER

QUERY = "how do plants make food?"
DOCS = [
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "The stock market fell on Tuesday.",
    "Chlorophyll absorbs light in the leaves of plants.",
    "A recipe for banana bread with walnuts.",
]


ORIGIN = "https://app.example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_server(ray_address: str, tiny_model: Path) -> Iterator[str]:
    """`serve --ray --replicas 2` joined to the tests' cluster; stopped with SIGINT."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "qwen3_rerank.cli", "serve", "--ray",
            "--ray-address", ray_address, "--replicas", "2", "--num-gpus", "0",
            "--model", str(tiny_model), "--device", "cpu", "--dtype", "float32",
            "--port", str(port), "--allowed-origins", ORIGIN,
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Ray Serve did not come up"
            time.sleep(1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_ray_serve_answers_the_server_protocol_with_in_process_scores(
    ray_server: str, reranker: Reranker
) -> None:
    response = httpx.post(
        f"{ray_server}/v1/rerank",
        json={"query": QUERY, "documents": DOCS, "top_n": 2},
        headers={"Origin": ORIGIN},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN  # --allowed-origins
    body = response.json()
    want = sorted(enumerate(reranker.score(QUERY, DOCS)), key=lambda p: (-p[1], p[0]))[:2]
    assert [r["index"] for r in body["results"]] == [i for i, _ in want]
    assert [r["relevance_score"] for r in body["results"]] == pytest.approx(
        [s for _, s in want], abs=1e-5
    )
    assert body["results"][0]["document"] == {"text": DOCS[want[0][0]]}

    bad = httpx.post(f"{ray_server}/v1/rerank", json={"query": "", "documents": ["x"]}, timeout=60)
    assert bad.status_code == 400  # the same typed errors as `qwen3-rerank serve`
    assert bad.json()["error"]["type"] == "BadRequestError"
    assert "query must not be empty" in bad.json()["detail"]
    assert "qwen3_rerank_requests_total" in httpx.get(f"{ray_server}/metrics", timeout=60).text


async def test_200_concurrent_requests_are_all_correct_and_spread_over_both_replicas(
    ray_server: str, reranker: Reranker
) -> None:
    queries = [f"{QUERY} ({i})" for i in range(200)]
    want = {q: reranker.score(q, DOCS) for q in queries}
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=ray_server, timeout=180, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/rerank", json={"query": q, "documents": DOCS}) for q in queries)
        )
    replicas: Counter[str] = Counter()
    for query, response in zip(queries, responses, strict=True):
        assert response.status_code == 200, response.text
        scores = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
        assert [scores[i] for i in range(len(DOCS))] == pytest.approx(want[query], abs=1e-5)
        replicas[response.headers[REPLICA_HEADER]] += 1
    assert len(replicas) == 2, replicas  # both replicas received traffic
