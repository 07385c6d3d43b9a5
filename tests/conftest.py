"""Shared fixtures: a tiny random-weight Qwen3 reranker with the real Qwen3 tokenizer.

Built once per test run with ``save_pretrained`` and loaded by every test through the same
``from_pretrained`` path a user takes; no network, no mocks.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # Triton kernels run in Triton's CPU interpreter here
    os.environ.setdefault("TRITON_INTERPRET", "1")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from qwen3_rerank import Reranker
from qwen3_rerank.random_model import build_random_model, qwen3_tokenizer_dir


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random Qwen3ForCausalLM plus the real Qwen3 tokenizer."""
    return build_random_model(tmp_path_factory.mktemp("models") / "tiny-qwen3-reranker", "tiny")


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The real Qwen3 tokenizer (transformers' fast tokenizer)."""
    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())


@pytest.fixture(scope="session")
def reranker(tiny_model: Path) -> Iterator[Reranker]:
    """One fp32 CPU reranker shared by the tests that do not change its settings."""
    with Reranker(tiny_model, device="cpu", dtype="float32") as rr:
        yield rr
