"""`qwen3-rerank batch` as a real process joined to the tests' Ray cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from qwen3_rerank import Reranker

ROWS = [
    {"id": "a", "query": "plants", "documents": ["leaf and sun", "stock market", "root"]},
    {"id": "b", "query": "rivers", "documents": []},
    {"id": "c", "query": "plants", "documents": ["green light"], "instruction": "Find botany"},
    {"id": "d", "query": "", "documents": ["x"]},
]


def batch(ray_address: str, model: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "qwen3_rerank.cli", "batch", "--ray-address", ray_address,
            "--model", str(model), "--device", "cpu", "--dtype", "float32", "--quiet", *args,
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip


def test_batch_scores_a_jsonl_file_of_document_lists_into_parquet(
    ray_address: str, tiny_model: Path, reranker: Reranker, tmp_path: Path
) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    output = tmp_path / "scored.parquet"

    done = batch(ray_address, tiny_model, "--input", str(source), "--output", str(output))

    assert done.returncode == 0, done.stderr
    chatter = [line for line in done.stderr.splitlines() if " INFO " in line or "WARNING" in line]
    assert not chatter  # --quiet: Ray's info and warning lines too, not only its progress bars
    rows = {row["id"]: row for row in pq.read_table(output).to_pylist()}
    assert sorted(rows) == ["a", "b", "c", "d"]
    assert rows["a"]["score"] == pytest.approx(reranker.score("plants", ROWS[0]["documents"]))
    assert rows["b"]["score"] == []
    assert rows["c"]["score"] == pytest.approx(
        reranker.score("plants", ["green light"], instruction="Find botany")
    )
    assert [rows[k]["error"] for k in "abc"] == [None, None, None]
    assert rows["d"]["score"] is None
    assert rows["d"]["error"] == "query must not be empty or whitespace only"


def test_batch_strict_fails_on_a_bad_row_with_one_line(
    ray_address: str, tiny_model: Path, tmp_path: Path
) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in ROWS))

    done = batch(
        ray_address, tiny_model, "--strict", "-i", str(source), "-o", str(tmp_path / "o.jsonl")
    )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "qwen3-rerank: error: bad row (query=''): query must not be empty or whitespace only; "
        "pass strict=False to report bad rows in the 'error' column instead"
    )
