"""Helpers of the server tests: start a real ``qwen3-rerank serve`` on 127.0.0.1, read its
metrics, check the error shape."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx

QUERY = "how do plants make food?"
DOCS = [
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "The stock market fell on Tuesday.",
    "Chlorophyll absorbs light in the leaves of plants.",
    "光合作用是植物制造食物的方式。",
    "A recipe for banana bread with walnuts.",
]
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ALLOWED_ORIGIN = "https://app.example.com"  # the shared server lets its pages call it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    model: Path, *extra: str, env: dict[str, str] | None = None, key: bool = True
) -> tuple[subprocess.Popen[bytes], str]:
    """A ``qwen3-rerank serve`` process in float32 (its scores compare exactly with the tests'
    fp32 reranker), once its /health answers 200."""
    port = free_port()
    command = [sys.executable, "-m", "qwen3_rerank.cli", "serve", "--model", str(model)]
    command += ["--device", "cpu", "--dtype", "float32", "--port", str(port)]
    command += ["--api-key", KEY] if key else []
    # stderr (the access log) goes to a file: an unread pipe would fill up and block the server
    log = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the server runs

    proc = subprocess.Popen(
        [*command, *extra],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    _logs[proc.pid] = log
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(proc, url, 120)
    except RuntimeError as exc:
        proc.kill()
        raise RuntimeError(f"server {exc}: {server_log(proc)}") from None
    return proc, url


def wait_for_health(proc: subprocess.Popen[Any], url: str, seconds: float) -> None:
    """Returns once ``url``'s /health answers 200.

    Raises:
        RuntimeError: ``proc`` exited first, or ``seconds`` passed.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited ({proc.returncode})")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"did not answer /health in {seconds} s")


_logs: dict[int, IO[bytes]] = {}


def server_log(proc: subprocess.Popen[bytes]) -> str:
    """What the server wrote on stderr so far (its access log among it)."""
    log = _logs[proc.pid]
    log.seek(0)
    return log.read().decode(errors="replace")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()


def metric(url: str, name: str) -> float:
    """One sample of the server's Prometheus metrics, labels included in ``name`` as
    prometheus_client writes them (``'x_total{code="413",route="/v1/rerank"}'``); 0 for a
    labelled sample not counted yet."""
    text = httpx.get(url + "/metrics", headers=AUTH).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    assert "{" in name, f"no {name} metric"
    assert name.split("{")[0] in text, f"no {name} metric"
    return 0.0


def requests_counted(url: str, code: int, route: str = "/v1/rerank") -> int:
    return int(metric(url, f'qwen3_rerank_requests_total{{code="{code}",route="{route}"}}'))


def assert_error(answer: httpx.Response, status: int, match: str) -> None:
    """The one error shape: vLLM's ``error`` object plus top-level ``detail`` and ``message``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error", "detail", "message"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == status
    assert body["detail"] == body["message"] == body["error"]["message"]
    assert match in body["message"]
