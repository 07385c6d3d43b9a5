"""A Hub id that cannot be reached fails fast, once, with one line naming the fixes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HUB_ID = "Qwen/Qwen3-Reranker-0.6B"
FIXES = ("qwen3-rerank make-model", "HF_HUB_OFFLINE=1", "local_files_only=True")


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def hub_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An empty Hugging Face cache and a Hub endpoint that refuses connections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return {
        **env,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        **extra,
    }


def run_cli(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "qwen3_rerank.cli", "rerank", "--model", HUB_ID, "-q", "q", "-"],
        input="a document\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return out, time.monotonic() - start


def test_unreachable_hub_fails_once_with_the_fixes(tmp_path: Path) -> None:
    out, seconds = run_cli(hub_env(tmp_path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr  # no retry lines from the Hub client
    assert lines[0].startswith(f"qwen3-rerank: error: cannot download '{HUB_ID}'")
    assert "unreachable" in lines[0]
    for fix in FIXES:
        assert fix in lines[0]
    assert seconds < 30  # transformers' own loading retries for close to a minute


def test_offline_mode_names_the_fixes_without_trying_the_hub(tmp_path: Path) -> None:
    out, _ = run_cli(hub_env(tmp_path, HF_HUB_OFFLINE="1"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "is not in the Hugging Face cache and downloads are off" in lines[0]
    for fix in FIXES:
        assert fix in lines[0]


def test_python_api_raises_model_load_error(tmp_path: Path) -> None:
    code = (
        "from qwen3_rerank import Reranker, ModelLoadError\n"
        "try:\n"
        f"    Reranker({HUB_ID!r}, device='cpu')\n"
        "except ModelLoadError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=hub_env(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert "the Hugging Face Hub is unreachable" in out.stdout
    assert "qwen3-rerank make-model" in out.stdout


def test_a_cached_model_loads_with_the_hub_unreachable(tmp_path: Path, tiny_model: Path) -> None:
    """A Hub id already in the cache loads from it, without asking the Hub."""
    from huggingface_hub import constants

    env = hub_env(tmp_path)
    # lay the tiny model out as the Hub client caches a download of HUB_ID at "main"
    repo = (
        Path(env["HF_HOME"])
        / "hub"
        / constants.REPO_ID_SEPARATOR.join(["models", *HUB_ID.split("/")])
    )
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in tiny_model.iterdir():
        (snapshot / file.name).symlink_to(file)
    code = (
        "from qwen3_rerank import Reranker\n"
        f"with Reranker({HUB_ID!r}, device='cpu') as rr:\n"
        "    print(len(rr.score('q', ['a', 'b'])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"


@pytest.mark.parametrize("name", ["./relative/folder", "/abs/folder", "a/b/c"])
def test_local_paths_are_not_hub_ids(name: str) -> None:
    from qwen3_rerank.hub import resolve_model

    assert resolve_model(name) == name
