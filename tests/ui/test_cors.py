"""`serve --allowed-origins` in a real headless Chromium: a page of an allowed origin calls the
API with fetch() and reads the ranking; a page of another origin is blocked by the browser."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank import Reranker

from ..server.serving import KEY, free_port, start_server, stop
from .conftest import needs_chromium

pytestmark = needs_chromium
QUERY = "what do pandas eat?"
DOCS = ["Giant pandas eat bamboo.", "Paris is in France.", "Red pandas eat fruit too."]
# the page's script: POST the query, hand back the JSON or the error the browser gave
FETCH = """
const [url, key, body, done] = arguments;
fetch(url, {method: "POST", body: body,
            headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"}})
  .then(r => r.json()).then(j => done({ok: j}), e => done({error: String(e)}));
"""


@pytest.fixture(scope="module")
def page_port() -> Iterator[int]:
    """A plain web server for an empty page: its origin is the page's."""

    class EmptyPage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>app</title>")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), EmptyPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def call_from_page(browser: Any, page: str, api: str) -> dict[str, Any]:
    browser.get(page)
    body = json.dumps({"query": QUERY, "documents": DOCS})
    answer: dict[str, Any] = browser.execute_async_script(FETCH, api + "/v1/rerank", KEY, body)
    return answer


def test_only_pages_of_allowed_origins_can_call_the_server(
    browser: Any, page_port: int, tiny_model: Path
) -> None:
    allowed = f"http://127.0.0.1:{page_port}"
    proc, api = start_server(tiny_model, "--allowed-origins", allowed)
    try:
        browser.set_script_timeout(60)
        answer = call_from_page(browser, allowed + "/", api)
        with Reranker(tiny_model, device="cpu", dtype="float32") as rr:
            want = rr.rerank(QUERY, DOCS)
        got = answer["ok"]["results"]
        assert [r["index"] for r in got] == [r.index for r in want]
        assert [r["relevance_score"] for r in got] == pytest.approx(
            [r.score for r in want], abs=1e-5
        )
        # the same page server under another name is another origin: the browser blocks it
        other = call_from_page(browser, f"http://localhost:{page_port}/", api)
        assert "ok" not in other
        assert "Failed to fetch" in other["error"]
    finally:
        stop(proc)
