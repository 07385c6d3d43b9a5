"""Every bad request gets its status in the one JSON error shape, and the server keeps serving."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .serving import AUTH, KEY, assert_error, free_port, server_log, start_server, stop

JSON = {"Content-Type": "application/json"}
GOOD = '{"query": "q", "documents": ["d"]}'


@pytest.mark.parametrize(
    ("content", "headers", "status", "match"),
    [
        (GOOD, JSON, 401, "API key"),
        (GOOD, {**JSON, "Authorization": "Bearer nope"}, 401, "API key"),
        (GOOD, {**JSON, "Authorization": KEY}, 401, "API key"),
        (GOOD, {"Content-Type": "text/plain", **AUTH}, 415, "application/json"),
        (
            "query=q&documents=d",
            {"Content-Type": "application/x-www-form-urlencoded", **AUTH},
            415,
            "application/json",
        ),
        (GOOD, AUTH, 415, "application/json"),  # no Content-Type at all
        ('{"query": "q", "documents": ["d"', {**JSON, **AUTH}, 400, "malformed JSON"),
        ("[" * 100_000 + "]" * 100_000, {**JSON, **AUTH}, 400, "parsing the body"),
        ('{"documents": ["d"]}', {**JSON, **AUTH}, 422, "query"),
        ('{"query": "q"}', {**JSON, **AUTH}, 422, "documents"),
        ('{"query": "q", "documents": "d"}', {**JSON, **AUTH}, 422, "documents"),
        ('{"query": "q", "documents": [1, 2]}', {**JSON, **AUTH}, 422, "documents"),
        ('{"query": 5, "documents": ["d"]}', {**JSON, **AUTH}, 422, "query"),
        ('{"query": "q", "documents": ["d"], "top_n": -1}', {**JSON, **AUTH}, 422, "top_n"),
        ('["not", "an", "object"]', {**JSON, **AUTH}, 422, "body"),
        ('{"query": "   ", "documents": ["d"]}', {**JSON, **AUTH}, 400, "query must not be empty"),
        (
            '{"query": "q", "documents": ["d"], "instruction": ""}',
            {**JSON, **AUTH},
            400,
            "instruction",
        ),
        (
            json.dumps({"query": "q " * 9000, "documents": ["d"]}),
            {**JSON, **AUTH},
            400,
            "shorten the query",
        ),
        (
            json.dumps({"query": "q", "documents": ["d"], "instruction": "i " * 9000}),
            {**JSON, **AUTH},
            400,
            "shorten",
        ),
        (
            json.dumps({"query": "q" * 3_000_000, "documents": ["d"]}),
            {**JSON, **AUTH},
            400,
            "shorten",
        ),
        (
            '{"query": "q", "documents": ["d"], "use_activation": false}',
            {**JSON, **AUTH},
            400,
            "probabilities",
        ),
        (
            '{"query": "q", "documents": ["d"], "raw_scores": true}',
            {**JSON, **AUTH},
            400,
            "probabilities",
        ),
        (
            '{"query": "q", "documents": ["d"], "truncate_prompt_tokens": 10}',
            {**JSON, **AUTH},
            400,
            "no room",
        ),
        (
            '{"query": "q", "documents": ["d"], "model": "other"}',
            {**JSON, **AUTH},
            404,
            "not served",
        ),
        (
            json.dumps({"query": "q", "documents": ["d"] * 51}),
            {**JSON, **AUTH},
            413,
            "51 documents",
        ),
    ],
)
def test_bad_requests_get_their_status_and_the_server_keeps_serving(
    served: str, content: str, headers: dict[str, str], status: int, match: str
) -> None:
    answer = httpx.post(served + "/v1/rerank", content=content, headers=headers, timeout=60)
    assert_error(answer, status, match)
    assert httpx.get(served + "/health").json() == {"status": "OK"}


def test_routing_errors_have_the_same_shape(served: str) -> None:
    assert_error(httpx.get(served + "/nowhere"), 404, "Not Found")
    assert_error(httpx.delete(served + "/health"), 405, "Method Not Allowed")
    assert_error(httpx.get(served + "/v1/rerank", headers=AUTH), 405, "Method Not Allowed")
    assert_error(httpx.get(served + "/metrics"), 401, "API key")
    assert httpx.get(served + "/health").status_code == 200


def test_lowercase_bearer_is_accepted(served: str) -> None:
    answer = httpx.post(
        served + "/v1/rerank",
        json={"query": "q", "documents": ["d"]},
        headers={"Authorization": f"bearer {KEY}"},
    )
    assert answer.status_code == 200


@pytest.fixture(scope="module")
def small_body_server(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with a 1 MiB body limit whose key comes from a file."""
    key_file = tmp_path_factory.mktemp("key") / "key"
    key_file.write_text("from-file\n")
    proc, url = start_server(
        tiny_model, "--max-body-mb", "1", "--api-key-file", str(key_file), key=False
    )
    yield Server(proc, url)
    stop(proc)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str

    def peak_memory(self) -> int:
        """The process's peak resident memory (bytes)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024


FILE_KEY = {"Authorization": "Bearer from-file"}


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(
    small_body_server: Server,
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "q", "documents": ["'
        for _ in range(64):  # 64 MiB if the server kept it all
            yield b"x" * 2**20
        yield b'"]}'

    before = small_body_server.peak_memory()
    answer = httpx.post(
        small_body_server.url + "/v1/rerank",
        content=chunks(),
        headers={**JSON, **FILE_KEY},
        timeout=60,
    )
    assert_error(answer, 413, "body over the limit of 1048576 bytes")
    assert small_body_server.peak_memory() - before < 32 * 2**20
    assert httpx.get(small_body_server.url + "/health").status_code == 200


def test_the_api_key_from_a_file_and_never_an_empty_one(
    small_body_server: Server, tiny_model: Path
) -> None:
    url = small_body_server.url
    assert_error(httpx.get(url + "/v1/models", headers=AUTH), 401, "API key")
    assert httpx.get(url + "/v1/models", headers=FILE_KEY).status_code == 200
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qwen3_rerank.cli",
            "serve",
            "--model",
            str(tiny_model),
            "--port",
            str(free_port()),
            "--api-key",
            "",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "API key from --api-key is empty" in out.stderr


def test_the_access_log_has_one_line_per_request_without_text_or_key(
    small_body_server: Server,
) -> None:
    secret_text = "a very private document"
    answer = httpx.post(
        small_body_server.url + "/v1/rerank",
        json={"query": "q", "documents": [secret_text, "other"]},
        headers=FILE_KEY,
    )
    assert answer.status_code == 200
    assert_error(httpx.get(small_body_server.url + "/v1/models"), 401, "API key")
    lines = [
        json.loads(line.split(" qwen3_rerank.access ", 1)[1])
        for line in server_log(small_body_server.proc).splitlines()
        if " qwen3_rerank.access " in line
    ]
    scored = [line for line in lines if line["path"] == "/v1/rerank" and line["status"] == 200]
    assert scored[-1]["documents"] == 2
    assert scored[-1]["method"] == "POST"
    assert any(line["path"] == "/v1/models" and line["status"] == 401 for line in lines)
    log = server_log(small_body_server.proc)
    assert secret_text not in log
    assert "from-file" not in log
