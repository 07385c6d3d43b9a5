"""The torch engine equals the literal model-card recipe to 1e-5 in fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qwen3_rerank import Reranker
from qwen3_rerank.tokenizing import split_text
from tests.core.reference import card_scores

QUERY = "What is the capital of China?"
DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. " * 3,
    "北京是中华人民共和国的首都。",
    "x",
    "A much longer passage about cities, rivers and mountains. " * 40,
    "emoji 😀🐼",
    "",
    "عاصمة الصين هي بكين",
]


@pytest.mark.parametrize("max_batch_tokens", [1, 200, 1000, 100_000])
@pytest.mark.parametrize(
    "instruction", [None, "Given a question, find the passage that answers it"]
)
def test_scores_equal_card_recipe(
    tiny_model: Path, max_batch_tokens: int, instruction: str | None
) -> None:
    expected = card_scores(tiny_model, QUERY, DOCUMENTS, instruction, 8192)
    with Reranker(
        tiny_model, device="cpu", dtype="float32", max_batch_tokens=max_batch_tokens
    ) as rr:
        got = rr.score(QUERY, DOCUMENTS, instruction=instruction)
    assert got == pytest.approx(expected, abs=1e-5)
    assert len(set(round(s, 6) for s in expected)) > len(DOCUMENTS) // 2  # scores do differ


@pytest.mark.parametrize("fast", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("max_length", [90, 128, 400])
def test_truncated_scores_equal_card_recipe(tiny_model: Path, max_length: int, fast: bool) -> None:
    expected = card_scores(tiny_model, QUERY, DOCUMENTS, None, max_length)
    with Reranker(
        tiny_model, device="cpu", dtype="float32", max_length=max_length, fast=fast
    ) as rr:
        results = rr.rerank(QUERY, DOCUMENTS)
    by_index = sorted(results, key=lambda r: r.index)
    assert [r.score for r in by_index] == pytest.approx(expected, abs=1e-5)
    assert any(r.truncated for r in results)
    assert [r.document for r in by_index] == DOCUMENTS  # the caller's text, not the cut one


def test_many_queries_packed_together_equal_card_recipe(tiny_model: Path) -> None:
    """rerank_batch packs several queries' prefixes and documents into shared batches."""
    queries = [QUERY, "北京在哪里\uff1f", "a third, longer question about mountains and rivers"]
    lists = [DOCUMENTS, DOCUMENTS[::-1], DOCUMENTS[2:5]]
    with Reranker(tiny_model, device="cpu", dtype="float32", max_batch_tokens=1500) as rr:
        batches = rr.rerank_batch(queries, lists)
    for query, docs, results in zip(queries, lists, batches, strict=True):
        expected = card_scores(tiny_model, query, docs, None, 8192)
        got = [r.score for r in sorted(results, key=lambda r: r.index)]
        assert got == pytest.approx(expected, abs=1e-5)


def test_long_documents_tokenized_in_pieces_equal_card_recipe(tiny_model: Path) -> None:
    """Documents long enough to be tokenized in pieces on all cores (qwen3_rerank.tokenizing)."""
    docs = [" ".join(DOCUMENTS[:3]) * 30, "Many words in a row, then\n\nmore  words " * 300]
    assert all(len(split_text(d)) > 2 for d in docs)
    expected = card_scores(tiny_model, QUERY, docs, None, 8192)
    with Reranker(tiny_model, device="cpu", dtype="float32") as rr:
        assert rr.score(QUERY, docs) == pytest.approx(expected, abs=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA, tests/gpu runs the kernel")
def test_gpu_attention_kernel_scores_like_card_recipe(tiny_model: Path) -> None:
    """The Triton prefix-attention kernel that the GPU runs, here in Triton's CPU interpreter
    inside the whole engine: batches of several queries, documents cut across batches, run
    through the all-layers function that CUDA compiles into one graph (uncompiled here), where
    the kernel applies the q-norm and RoPE itself."""
    pytest.importorskip("triton")
    queries = [QUERY, "北京在哪里\uff1f"]
    lists = [DOCUMENTS, DOCUMENTS[::-1][:5]]
    with Reranker(
        tiny_model, device="cpu", dtype="float32", max_batch_tokens=700, attention="prefix"
    ) as rr:
        assert rr.engine.attention == "prefix"  # type: ignore[attr-defined]
        batches = rr.rerank_batch(queries, lists)
    for query, docs, results in zip(queries, lists, batches, strict=True):
        expected = card_scores(tiny_model, query, docs, None, 8192)
        got = [r.score for r in sorted(results, key=lambda r: r.index)]
        assert got == pytest.approx(expected, abs=1e-5)
