"""Reranker: ranking, top_n / threshold edges, ties, and every kind of bad input."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from qwen3_rerank import EngineError, InvalidInputError, Qwen3RerankError, Reranker, RerankResult
from qwen3_rerank.engines.base import ScoredDocuments
from qwen3_rerank.reranker import rank as _rank
from tests.core.engine_contract import DOCUMENTS, QUERY


def test_rerank_result_is_frozen() -> None:
    result = RerankResult(index=0, score=0.5, document="d", truncated=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.score = 1.0  # type: ignore[misc]


def test_ties_are_broken_by_input_index() -> None:
    docs = ["a", "b", "c", "d", "e"]
    scored = ScoredDocuments([0.5, 0.9, 0.5, 0.9, 0.1], [False] * 5)
    assert [r.index for r in _rank(docs, scored, None, None)] == [1, 3, 0, 2, 4]
    assert [r.index for r in _rank(docs, scored, 3, None)] == [1, 3, 0]
    assert [r.index for r in _rank(docs, scored, None, 0.5)] == [1, 3, 0, 2]  # inclusive


def test_duplicate_documents_tie_and_keep_input_order(reranker: Reranker) -> None:
    docs = ["same text", "other text", "same text", "same text"]
    results = reranker.rerank(QUERY, docs)
    same = [r for r in results if r.document == "same text"]
    assert len({r.score for r in same}) == 1
    assert [r.index for r in same] == [0, 2, 3]


@pytest.mark.parametrize("top_n", [1, 2, len(DOCUMENTS), len(DOCUMENTS) + 10])
def test_top_n(reranker: Reranker, top_n: int) -> None:
    full = reranker.rerank(QUERY, DOCUMENTS)
    assert reranker.rerank(QUERY, DOCUMENTS, top_n=top_n) == full[:top_n]


def test_score_threshold_edges(reranker: Reranker) -> None:
    full = reranker.rerank(QUERY, DOCUMENTS)
    assert reranker.rerank(QUERY, DOCUMENTS, score_threshold=0.0) == full
    assert reranker.rerank(QUERY, DOCUMENTS, score_threshold=1.0) == [
        r for r in full if r.score >= 1.0
    ]
    middle = full[2].score
    kept = reranker.rerank(QUERY, DOCUMENTS, score_threshold=middle)
    assert kept == full[:3]  # a score equal to the threshold is kept
    assert reranker.rerank(QUERY, DOCUMENTS, top_n=2, score_threshold=middle) == full[:2]
    assert reranker.rerank(QUERY, DOCUMENTS, top_n=5, score_threshold=middle) == full[:3]


def test_rerank_batch_matches_single_queries(reranker: Reranker) -> None:
    queries = [QUERY, "stock prices", "banana bread"]
    batch = reranker.rerank_batch(queries, [DOCUMENTS] * 3, top_n=3)
    for query, got in zip(queries, batch, strict=True):
        single = reranker.rerank(query, DOCUMENTS, top_n=3)
        assert [r.index for r in got] == [r.index for r in single]
        assert [r.score for r in got] == pytest.approx([r.score for r in single], abs=1e-5)


def test_unicode_of_any_script_scores(reranker: Reranker) -> None:
    docs = ["熊猫", "مرحبا بالعالم", "emoji 😀🐼👩‍👩‍👧", "Ελληνικά", "हिन्दी", "\u200b", "a\x00b"]
    scores = reranker.score("多语言 query ✓", docs)
    assert len(scores) == len(docs)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_instruction_per_call_and_per_reranker(tiny_model: Any, reranker: Reranker) -> None:
    instruction = "Judge passages about botany"
    per_call = reranker.score(QUERY, DOCUMENTS, instruction=instruction)
    with Reranker(tiny_model, device="cpu", dtype="float32", instruction=instruction) as rr:
        assert rr.score(QUERY, DOCUMENTS) == pytest.approx(per_call, abs=1e-6)


def test_accepts_tuples_and_other_sequences(reranker: Reranker) -> None:
    assert reranker.score(QUERY, tuple(DOCUMENTS)) == pytest.approx(
        reranker.score(QUERY, DOCUMENTS), abs=1e-6
    )


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("score", {"query": "", "documents": ["d"]}, "query must not be empty"),
    ("score", {"query": "  \n\t", "documents": ["d"]}, "query must not be empty"),
    ("score", {"query": None, "documents": ["d"]}, "query must be a str"),
    ("score", {"query": b"bytes", "documents": ["d"]}, "query must be a str"),
    ("score", {"query": "q", "documents": None}, "documents must be a list"),
    ("score", {"query": "q", "documents": "one string"}, "documents must be a list"),
    ("score", {"query": "q", "documents": {"a": 1}}, "documents must be a list"),
    ("score", {"query": "q", "documents": ["ok", None]}, r"documents\[1\] must be a str"),
    ("score", {"query": "q", "documents": ["ok", b"x"]}, r"documents\[1\] must be a str"),
    ("score", {"query": "q", "documents": [{"text": "x"}]}, r"documents\[0\] must be a str"),
    ("score", {"query": "q", "documents": ["lone \ud800"]}, "not valid Unicode"),
    ("score", {"query": "q \udfff", "documents": ["d"]}, "not valid Unicode"),
    ("score", {"query": "q", "documents": ["d"], "instruction": ""}, "instruction"),
    ("score", {"query": "q", "documents": ["d"], "instruction": 5}, "instruction"),
    ("rerank", {"query": "q", "documents": ["d"], "top_n": 0}, "top_n"),
    ("rerank", {"query": "q", "documents": ["d"], "top_n": -1}, "top_n"),
    ("rerank", {"query": "q", "documents": ["d"], "top_n": 1.5}, "top_n"),
    ("rerank", {"query": "q", "documents": ["d"], "top_n": True}, "top_n"),
    ("rerank", {"query": "q", "documents": ["d"], "score_threshold": -0.1}, "score_threshold"),
    ("rerank", {"query": "q", "documents": ["d"], "score_threshold": 1.5}, "score_threshold"),
    ("rerank", {"query": "q", "documents": ["d"], "score_threshold": float("nan")}, "threshold"),
    ("rerank", {"query": "q", "documents": ["d"], "score_threshold": "0.5"}, "threshold"),
    ("rerank", {"query": "q", "documents": [], "top_n": 0}, "top_n"),
    ("rerank_batch", {"queries": ["q"], "documents_lists": [["d"], ["e"]]}, "1 queries but 2"),
    ("rerank_batch", {"queries": "q", "documents_lists": [["d"]]}, "queries must be a list"),
    ("rerank_batch", {"queries": ["q"], "documents_lists": None}, "documents_lists"),
    ("rerank_batch", {"queries": ["q", ""], "documents_lists": [["d"], ["e"]]}, "query"),
]


@pytest.mark.parametrize(("method", "kwargs", "match"), BAD_CALLS)
def test_bad_input_raises_typed_error(
    reranker: Reranker, method: str, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        getattr(reranker, method)(**kwargs)
    assert isinstance(info.value, Qwen3RerankError)
    assert isinstance(info.value, ValueError)


async def test_async_bad_input_raises_before_scoring(reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError):
        await reranker.arerank("", ["d"])
    with pytest.raises(InvalidInputError):
        await reranker.ascore("q", [None])  # type: ignore[list-item]


def test_query_too_long_for_max_length(tiny_model: Any) -> None:
    with (
        Reranker(tiny_model, device="cpu", max_length=128) as rr,
        pytest.raises(InvalidInputError, match="no room for a document"),
    ):
        rr.rerank("long query " * 100, ["d"])


async def test_async_with_closes_a_local_engine(tiny_model: Any) -> None:
    async with Reranker(tiny_model, device="cpu") as rr:
        scores = await rr.ascore(QUERY, DOCUMENTS)
    assert len(scores) == len(DOCUMENTS)
    with pytest.raises(EngineError, match="closed"):
        await rr.ascore(QUERY, DOCUMENTS)


def test_identical_pairs_are_sent_once_and_share_their_score() -> None:
    """Through a real HTTP server that counts what it is sent: merged retriever results with
    repeats cost one pair each, across queries too, and copies get the very same score."""
    from tests.core.test_http_engine import FakeServer, vendor_score

    server = FakeServer()
    try:
        docs = ["bamboo", "paris", "bamboo", "leaves", "paris"]
        done: list[int] = []
        with Reranker.remote(server.url, api="qwen3") as rr:
            scores = rr.score(QUERY, docs, progress=done.append)
            sent = [b["documents"] for _, _, b in server.requests]
            assert sent == [["bamboo", "paris", "leaves"]]
            assert scores == [vendor_score(d) for d in docs]
            assert sum(done) == len(docs)  # progress counts every pair, copies included

            del server.requests[:]
            batch = rr.rerank_batch([QUERY, "other", QUERY], [docs[:2], docs[:2], docs[2:]])
            bodies = sorted((b["query"], b["documents"]) for _, _, b in server.requests)
            assert bodies == sorted([("other", docs[:2]), (QUERY, ["bamboo", "paris", "leaves"])])
            singles = [rr.rerank(q, d) for q, d in ((QUERY, docs[:2]), ("other", docs[:2]))]
            assert batch == [*singles, rr.rerank(QUERY, docs[2:])]

            del server.requests[:]
            rr.rerank_batch([QUERY, QUERY], [["bamboo"], ["bamboo"]], instruction="Find food")
            rr.score(QUERY, ["bamboo"], instruction="Find plants")
            instructions = [b["instruction"] for _, _, b in server.requests]
            assert instructions == ["Find food", "Find plants"]  # another instruction, new pair
    finally:
        server.close()
