"""Every ```python and ```bash block of README.md and docs/ runs, against the tiny model.

How a page's blocks run (one test per page, its blocks in order, in one scratch folder that has
the repository's ``examples/``; a block that fails names its page and line):

- ``Qwen/Qwen3-Reranker-0.6B`` is replaced by the tiny test model's folder, and the Hub is off.
- ``python`` blocks run in this process, each in a fresh namespace.
- ``bash`` blocks run as written in ``bash -euo pipefail``. A line ending in ``&`` starts a server:
  its ``--port N`` (and every ``:N`` of the block) becomes a free port, it must answer HTTP once
  the block is done, and it is stopped with the block's process group. A block that uses its
  server must wait for it, as a reader would (``until curl -sf localhost:N/health; do sleep 1;
  done``).
- A python block, or a bash block without a server of its own, that mentions ``:8000`` talks to
  one ``qwen3-rerank serve`` of the tiny model started for the session.
- ``<!-- docs-test: skip (why) -->`` on the line before a block keeps it from running. Such
  markers are counted (``SKIPPED``), so they cannot grow unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
HUB_ID = "Qwen/Qwen3-Reranker-0.6B"
SKIP_MARK = "<!-- docs-test: skip"
# README: the set-up lines and vLLM's (checked against .ci/run below), the test command (CI runs
# it), the notebooks' jupyter line (tests/notebooks runs the notebooks)
SKIPPED = {"README.md": 4}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
SERVER_PORT = re.compile(r"(?<=--port )(\d+)")


@dataclass
class Block:
    language: str
    code: str
    line: int
    skipped: bool


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(match[1], match[2], line, before.startswith(SKIP_MARK)))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for_http(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before answering")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.5)
    raise AssertionError(f"nothing answered on port {port} within 180 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def docs_env(tiny_model: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="session")
def session_server(tiny_model: Path, docs_env: dict[str, str]) -> Iterator[int]:
    """One ``qwen3-rerank serve`` of the tiny model for the blocks that talk to ``:8000``."""
    port = free_port()
    command = [sys.executable, "-m", "qwen3_rerank.cli", "serve", "--model", str(tiny_model)]
    process = subprocess.Popen(
        [*command, "--device", "cpu", "--port", str(port)], env=docs_env, start_new_session=True
    )
    try:
        wait_for_http(port, process)
        yield port
    finally:
        stop(process)


def run_bash(code: str, cwd: Path, env: dict[str, str], session_port: int | None) -> None:
    """Runs the block as written, in a session of its own; servers it starts in the background
    get free ports, must answer HTTP once the block is done (unless the block stops them itself,
    after using them), and are stopped with the session."""
    servers = [line for line in code.splitlines() if line.split(" #")[0].strip().endswith("&")]
    ports = []
    for line in servers:
        old = SERVER_PORT.search(line)
        assert old, f"a server started with & needs --port N: {line}"
        ports.append(free_port())
        code = re.sub(rf"(?<=[: ]){old[1]}\b", str(ports[-1]), code)
    if not servers and session_port is not None:
        code = code.replace(":8000", f":{session_port}")
    log = cwd / "block.log"
    with log.open("w") as out:  # a file, not a pipe: servers left running keep it open
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        returncode = process.wait(timeout=300)
        assert returncode == 0, f"exit {returncode}\n{log.read_text()}"
        if "kill " not in code:  # a block that stops its servers itself has talked to them
            for port in ports:
                wait_for_http(port)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        else:
            time.sleep(2)  # let the servers shut down before the next block
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def run_python(code: str, where: str) -> None:
    """Runs the block as a module of its own (dataclasses look their module up), without this
    file's ``from __future__`` imports."""
    module = types.ModuleType("docs_block")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, where, "exec", dont_inherit=True), module.__dict__)
    finally:
        del sys.modules[module.__name__]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_runs(
    page: Path,
    tiny_model: Path,
    docs_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ran = 0
    for block in blocks(page):
        if block.skipped or block.language not in ("python", "bash"):
            continue
        code = block.code.replace(HUB_ID, str(tiny_model))
        server_port = request.getfixturevalue("session_server") if ":8000" in code else None
        where = f"{page.relative_to(ROOT)}:{block.line}"
        try:
            if block.language == "python":
                code = code.replace(":8000", f":{server_port}") if server_port else code
                run_python(code, where)
            else:
                run_bash(code, tmp_path, docs_env, server_port)
        except BaseException as exc:
            raise AssertionError(f"the block at {where} failed: {exc!r}") from exc
        ran += 1
    runnable = [b for b in blocks(page) if b.language in ("python", "bash") and not b.skipped]
    assert ran == len(runnable)


def test_skip_markers_are_counted() -> None:
    """A block kept from running is a decision: adding one means changing SKIPPED here."""
    counts = {
        str(page.relative_to(ROOT)): sum(b.skipped for b in blocks(page))
        for page in PAGES
        if any(b.skipped for b in blocks(page))
    }
    markers = {
        str(page.relative_to(ROOT)): page.read_text(encoding="utf-8").count(SKIP_MARK)
        for page in PAGES
    }
    assert counts == SKIPPED
    assert {k: v for k, v in markers.items() if v} == SKIPPED  # no marker stray from its block


def test_readme_setup_lines_are_what_ci_runs() -> None:
    """The README's install block, then its vLLM block, are run by .ci/run, line for line and
    in order."""
    readme = blocks(ROOT / "README.md")
    setup = next(b for b in readme if "pip install -e" in b.code)
    vllm = next(b for b in readme if ".venv-vllm" in b.code)
    ci_lines = [
        line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()
    ]
    wanted = [line.strip() for b in (setup, vllm) for line in b.code.splitlines() if line.strip()]
    positions = [ci_lines.index(line) for line in wanted]  # ValueError if one is missing
    assert positions == sorted(positions)
    assert shlex.split(setup.code.strip().splitlines()[-1])[-1] == ".[all,dev]"
    assert "python3 -m pytest" in ci_lines
