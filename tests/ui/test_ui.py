"""The web page in a real headless Chromium: type, submit, read the ranking back, see errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qwen3_rerank import Reranker

pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import needs_chromium

pytestmark = needs_chromium
ARTIFACTS = Path(os.environ.get("QWEN3_RERANK_ARTIFACTS", Path(__file__).parents[2] / ".artifacts"))
QUERY = "what do pandas eat?"
DOCS = [
    "Giant pandas eat almost nothing but bamboo.",
    "Paris is the capital of France.",
    "Red pandas eat bamboo, fruit and eggs.",
    "The stock market closed higher on Tuesday.",
]


@pytest.fixture(scope="module")
def page(tiny_model: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qwen3_rerank.cli",
            "ui",
            "--model",
            str(tiny_model),
            "--device",
            "cpu",
            "--port",
            str(port),
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def fill(driver: object, elem_id: str, text: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input")  # type: ignore[attr-defined]
    box.clear()
    if text:
        box.send_keys(text)


def submit_and_wait(driver: object, selector: str) -> object:
    driver.find_element(By.CSS_SELECTOR, "#submit").click()  # type: ignore[attr-defined]
    return WebDriverWait(driver, 60).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f"#results {selector}"))
    )


def test_ranking_shown_in_the_page_matches_the_engine(
    page: str, browser: object, tiny_model: Path
) -> None:
    browser.get(page)  # type: ignore[attr-defined]
    WebDriverWait(browser, 60).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#query textarea"))
    )
    fill(browser, "query", QUERY)
    fill(browser, "documents", "\n".join(DOCS))
    table = submit_and_wait(browser, "#ranking")
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")  # type: ignore[attr-defined]
    ]
    with Reranker(tiny_model, device="cpu") as rr:
        expected = rr.rerank(QUERY, DOCS)
    assert [int(r[1]) for r in rows] == [r.index for r in expected]
    assert [float(r[2]) for r in rows] == pytest.approx([r.score for r in expected], abs=6e-5)
    assert [r[4] for r in rows] == [r.document for r in expected]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "ui-ranking.png"))  # type: ignore[attr-defined]


def test_bad_input_shows_an_error_in_the_page(page: str, browser: object) -> None:
    browser.get(page)  # type: ignore[attr-defined]
    WebDriverWait(browser, 60).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#query textarea"))
    )
    fill(browser, "query", "")
    fill(browser, "documents", "one document")
    error = submit_and_wait(browser, "#error")
    assert "query must not be empty" in error.text  # type: ignore[attr-defined]
    assert "Traceback" not in browser.page_source  # type: ignore[attr-defined]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "ui-error.png"))  # type: ignore[attr-defined]


def test_uploaded_jsonl_file_is_ranked_with_top_n(
    page: str, browser: object, tiny_model: Path, tmp_path: Path
) -> None:
    upload = tmp_path / "docs.jsonl"
    upload.write_text("".join(f'{{"id": {i}, "text": "{d}"}}\n' for i, d in enumerate(DOCS)))
    browser.get(page)  # type: ignore[attr-defined]
    WebDriverWait(browser, 60).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#query textarea"))
    )
    fill(browser, "query", QUERY)
    fill(browser, "top_n", "2")
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(upload))  # type: ignore[attr-defined]
    WebDriverWait(browser, 30).until(  # the page lists the uploaded file as "docs" ".jsonl"
        lambda d: ".jsonl" in d.find_element(By.CSS_SELECTOR, "#upload").text
    )
    table = submit_and_wait(browser, "#ranking")
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")  # type: ignore[attr-defined]
    ]
    with Reranker(tiny_model, device="cpu") as rr:
        expected = rr.rerank(QUERY, DOCS, top_n=2)
    assert [int(r[1]) for r in rows] == [r.index for r in expected]
    assert [r[4] for r in rows] == [r.document for r in expected]
