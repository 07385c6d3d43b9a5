"""The CLI end to end, as a subprocess, on the tiny fixture model."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3_rerank import Reranker, __version__
from qwen3_rerank.cli.common import add_engine_arguments, engine_options

QUERY = "what is a panda?"
DOCS = ["The giant panda is a bear.", "Paris is in France.", "熊猫吃竹子。", "Pandas eat bamboo."]


def run_cli(*args: str, stdin: str | bytes | None = None) -> subprocess.CompletedProcess[str]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        [sys.executable, "-m", "qwen3_rerank.cli", *args],
        input=data,
        capture_output=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "docs.txt"
    path.write_text("\n".join(DOCS[:2]) + "\n\n" + "\n".join(DOCS[2:]) + "\n", encoding="utf-8")
    return path


def test_version_and_python_dash_m() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout == f"qwen3-rerank {__version__}\n"
    # `python -m qwen3_rerank` is the same command (for where the script is not on PATH)
    module = subprocess.run(
        [sys.executable, "-m", "qwen3_rerank", "--version"], capture_output=True, text=True
    )
    assert module.returncode == 0
    assert module.stdout == f"qwen3-rerank {__version__}\n"


def test_rerank_prints_ranked_json_lines(tiny_model: Path, docs_file: Path) -> None:
    out = run_cli("rerank", "--model", str(tiny_model), "--query", QUERY, str(docs_file))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    with Reranker(tiny_model, device="cpu") as rr:
        expected = rr.rerank(QUERY, DOCS)
    assert [line["rank"] for line in lines] == [1, 2, 3, 4]
    assert [line["index"] for line in lines] == [r.index for r in expected]
    assert [line["document"] for line in lines] == [r.document for r in expected]
    assert [line["score"] for line in lines] == pytest.approx([r.score for r in expected], abs=1e-6)
    assert out.stderr == ""  # no progress bar or load noise when stderr is not a terminal


def test_jsonl_from_stdin_with_ids_top_n_and_threshold(tiny_model: Path) -> None:
    records = "".join(json.dumps({"id": f"doc-{i}", "text": d}) + "\n" for i, d in enumerate(DOCS))
    out = run_cli(
        "rerank", "-m", str(tiny_model), "-q", QUERY, "--jsonl", "--top-n", "2", "-", stdin=records
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 2
    assert all(line["id"] == f"doc-{line['index']}" for line in lines)
    threshold = lines[1]["score"]
    out = run_cli(
        "rerank",
        "-m",
        str(tiny_model),
        "-q",
        QUERY,
        "--jsonl",
        "--threshold",
        str(threshold),
        "--instruction",
        "Find facts about animals",
        "-",
        stdin=records,
    )
    assert out.returncode == 0, out.stderr
    assert all(json.loads(x)["score"] >= threshold for x in out.stdout.splitlines())


def test_table_format_and_truncation(tiny_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("short doc\n" + "word " * 3000 + "\n", encoding="utf-8")
    out = run_cli(
        "rerank",
        "-m",
        str(tiny_model),
        "-q",
        QUERY,
        "--format",
        "table",
        "--max-length",
        "200",
        str(path),
    )
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0].split() == ["rank", "index", "score", "document"]
    assert len(rows) == 3
    assert any("[truncated]" in row for row in rows[1:])


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--query", "  "], None, "--query must not be empty"),
        (["--query", "q", "--top-n", "0"], None, "--top-n"),
        (["--query", "q", "--threshold", "1.5"], None, "--threshold"),
        (["--query", "q", "--threshold", "abc"], None, "--threshold"),
        (["--query", "q", "/no/such/file.txt"], None, "no such file"),
        (["--query", "q", "--jsonl", "-"], "{not json}\n", "line 1: invalid JSON"),
        (["--query", "q", "--jsonl", "-"], '{"body": "x"}\n', "'text' field"),
        (["--query", "q", "-"], b"\xff\xfe bad bytes\n", "not UTF-8"),
        (["--query", "q", "--device", "quantum", "-"], "doc\n", "device"),
        (["--query", "q", "--engine", "nope", "-"], "doc\n", "unknown engine"),
        (["--query", "q", "--max-length", "10", "-"], "doc\n", "max_length"),
        (
            ["--query", "q", "--quantization", "int4", "-"],
            "doc\n",
            "--quantization: invalid choice",
        ),
        (["--query", "q", "--option", "fused_mlp", "-"], "doc\n", "expected KEY=VALUE"),
        (["--query", "q", "--option", "fused_mlpp=1", "-"], "doc\n", "does not take fused_mlpp"),
        (["--query", "q", "--option", "attention=nope", "-"], "doc\n", "unknown attention"),
        (["--query", "q", "--option", "max_length=9", "-"], "doc\n", "use --max-length"),
        (
            ["--query", "q", "--option", "fast=false", "--option", "fast=true", "-"],
            "doc\n",
            "--option fast= given twice",
        ),
        (
            ["--query", "q", "--url", "http://127.0.0.1:9", "--option", "fast=false", "-"],
            "doc\n",
            "drop it with --url",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tiny_model: Path, args: list[str], stdin: str | bytes | None, message: str
) -> None:
    out = run_cli("rerank", "--model", str(tiny_model), *args, stdin=stdin)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert out.stdout == ""


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--device", "cpu"],
            "qwen3-rerank: error: --quantization fp8 needs a CUDA GPU with FP8 units; "
            "this run is on cpu (drop --quantization)",
        ),
        (
            ["--dtype", "float32"],
            "qwen3-rerank: error: --quantization fp8 needs --dtype bfloat16 (got --dtype float32)",
        ),
    ],
)
def test_fp8_is_refused_in_the_flags_words(
    tiny_model: Path, flags: list[str], message: str
) -> None:
    args = [*flags, "--quantization", "fp8", "-q", QUERY, "-"]
    out = run_cli("rerank", "--model", str(tiny_model), *args, stdin="\n".join(DOCS))
    assert out.returncode == 2
    assert out.stderr.strip() == message
    assert out.stdout == ""


def test_option_sets_any_engine_option(tiny_model: Path) -> None:
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    flags = ["--model", str(tiny_model), "--device", "cpu"]
    flags += ["--option", "attention=loop", "--option", "fast=True", "--option", "token=none"]
    options = engine_options(parser.parse_args([*flags, "--option", "x=0.5", "--option", "y=2"]))
    assert options | {"attention": "loop", "fast": True, "token": None} == options
    assert (options.pop("x"), options.pop("y")) == (0.5, 2)
    with Reranker(tiny_model, **options) as rr:
        assert rr.engine.attention == "loop"
    out = run_cli("rerank", *flags, "-q", QUERY, "-", stdin="\n".join(DOCS))
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == len(DOCS)


def test_rerank_needs_a_model_or_a_server() -> None:
    out = run_cli("rerank", "-q", "q", "-", stdin="doc\n")
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == "qwen3-rerank: error: give --model (a local engine) or --url (a rerank server)"
    )


def test_missing_model_folder_exit_2(tmp_path: Path) -> None:
    out = run_cli("rerank", "--model", str(tmp_path / "absent"), "-q", "q", "-", stdin="doc\n")
    assert out.returncode == 2
    assert "no such model folder" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_make_model_builds_a_loadable_folder(tmp_path: Path) -> None:
    out = run_cli("make-model", str(tmp_path / "m"), "--seed", "3")
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip())
    assert (folder / "config.json").is_file()
    with Reranker(folder, device="cpu") as rr:
        assert len(rr.score("q", ["a", "b"])) == 2


def test_bench_times_a_workload_and_counts_its_template_tokens(tiny_model: Path) -> None:
    out = run_cli(
        "bench",
        "--model",
        str(tiny_model),
        "--device",
        "cpu",
        "-w",
        "rag100x256",
        "--passes",
        "2",
        "--latency-queries",
        "3",
        "--format",
        "json",
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["model"] == str(tiny_model)
    assert report["engine"] == "TorchEngine, cpu"
    assert list(report["workloads"]) == ["rag100x256"]
    got = report["workloads"]["rag100x256"]
    # every rag100x256 pair has the same length: count one whole prompt independently
    from transformers import AutoTokenizer

    from qwen3_rerank.prompt import format_pair
    from qwen3_rerank.workloads import build

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    wl = build(tokenizer, seed=1)["rag100x256"]
    pair = tokenizer(format_pair(wl.queries[0], wl.documents[0][0]), add_special_tokens=False)
    assert (got["pairs"], got["tokens"]) == (400, 400 * len(pair["input_ids"]))
    assert got["pairs_per_s"] > 0
    assert got["tokens_per_s"] == pytest.approx(got["pairs_per_s"] * got["tokens"] / 400, rel=1e-3)
    assert 0 < got["p50_ms"] <= got["max_ms"]
    assert got["torch_peak_gib"] is None  # CPU
    progress = out.stderr.splitlines()
    assert sum("pass" in line for line in progress) == 2


def test_bench_table_and_bad_workload(tiny_model: Path) -> None:
    args = ["bench", "--model", str(tiny_model), "--device", "cpu", "-w", "long16x4000"]
    out = run_cli(*args, "--passes", "1", "--latency-queries", "1", "--quiet")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    title, header, row = out.stdout.splitlines()
    assert title == f"{tiny_model} on TorchEngine, cpu"
    assert header.split()[:4] == ["workload", "pairs", "tokens", "pairs/s"]
    assert row.split()[:2] == ["long16x4000", "16"]
    bad = run_cli("bench", "--model", str(tiny_model), "-w", "rag", "--passes", "1")
    assert bad.returncode == 2
    assert "invalid choice: 'rag'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
