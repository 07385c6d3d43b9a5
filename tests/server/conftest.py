"""One real ``qwen3-rerank serve`` process on 127.0.0.1, shared by the server tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .serving import ALLOWED_ORIGIN, start_server, stop


@pytest.fixture(scope="session")
def served(tiny_model: Path) -> Iterator[str]:
    proc, url = start_server(
        tiny_model, "--max-documents", "50", "--allowed-origins", ALLOWED_ORIGIN
    )
    yield url
    stop(proc)
