"""A user's type checker sees the installed packages' types (PEP 561's ``py.typed`` markers):
without them mypy skips the packages as untyped and every name from them is ``Any``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

USER_CODE = """\
from langchain_qwen3_rerank import Qwen3Rerank as LangchainRerank
from llama_index.postprocessor.qwen3_rerank import Qwen3Rerank as LlamaRerank
from qwen3_rerank import Reranker, RerankResult


def best(rr: Reranker, docs: list[str]) -> RerankResult:
    return rr.rerank("q", docs, top_n=1)[0]


def plug_ins(rr: Reranker) -> tuple[LangchainRerank, LlamaRerank]:
    return LangchainRerank(reranker=rr), LlamaRerank(reranker=rr)


wrong: int = Reranker.score
"""


@pytest.mark.slow
def test_mypy_checks_user_code_against_the_packages_types(tmp_path: Path) -> None:
    (tmp_path / "user.py").write_text(USER_CODE)
    # run where a user's project is, outside this repository and its mypy settings
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "import-untyped" not in run.stdout, run.stdout
    # the one error is the deliberate one, and it names score's real signature
    assert "Found 1 error in 1 file" in run.stdout, run.stdout
    deliberate = (
        'user.py:14: error: Incompatible types in assignment (expression has type "def score('
    )
    assert deliberate in run.stdout
    assert ") -> list[float]" in run.stdout
