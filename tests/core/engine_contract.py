"""The behaviour every engine must show, as a test class to subclass per engine.

A subclass provides a ``contract_reranker`` fixture returning a ``Reranker`` on that engine.
``tolerance`` is the float noise allowed between batch compositions.
"""

from __future__ import annotations

import asyncio
import math

from qwen3_rerank import Reranker

QUERY = "how do plants make food?"
DOCUMENTS = [
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "The stock market fell on Tuesday.",
    "Chlorophyll absorbs light in the leaves of plants.",
    "光合作用是植物制造食物的方式。",
    "A recipe for banana bread with walnuts.",
    "Roots take up water and minerals from the soil. " * 20,
]


class EngineContract:
    tolerance = 1e-5
    repeat_tolerance = 0.0  # the same call twice: bit for bit, unless an engine caches

    def test_one_score_per_document_in_range(self, contract_reranker: Reranker) -> None:
        scores = contract_reranker.score(QUERY, DOCUMENTS)
        assert len(scores) == len(DOCUMENTS)
        assert all(isinstance(s, float) and 0.0 <= s <= 1.0 and math.isfinite(s) for s in scores)

    def test_scores_follow_input_order(self, contract_reranker: Reranker) -> None:
        scores = contract_reranker.score(QUERY, DOCUMENTS)
        reversed_scores = contract_reranker.score(QUERY, DOCUMENTS[::-1])
        for a, b in zip(scores, reversed_scores[::-1], strict=True):
            assert abs(a - b) <= self.tolerance

    def test_empty_documents_give_empty_results(self, contract_reranker: Reranker) -> None:
        assert contract_reranker.score(QUERY, []) == []
        assert contract_reranker.rerank(QUERY, []) == []
        assert contract_reranker.rerank_batch([QUERY, "other"], [[], ["doc"]])[0] == []

    def test_deterministic(self, contract_reranker: Reranker) -> None:
        first = contract_reranker.score(QUERY, DOCUMENTS)
        again = contract_reranker.score(QUERY, DOCUMENTS)
        assert max(abs(a - b) for a, b in zip(first, again, strict=True)) <= self.repeat_tolerance

    def test_instruction_changes_scores(self, contract_reranker: Reranker) -> None:
        default = contract_reranker.score(QUERY, DOCUMENTS)
        other = contract_reranker.score(QUERY, DOCUMENTS, instruction="Find recipes for dessert")
        assert max(abs(a - b) for a, b in zip(default, other, strict=True)) > 1e-4

    def test_batch_composition_does_not_change_scores(self, contract_reranker: Reranker) -> None:
        together = contract_reranker.score(QUERY, DOCUMENTS)
        alone = [contract_reranker.score(QUERY, [d])[0] for d in DOCUMENTS]
        mixed = contract_reranker.rerank_batch(
            ["an unrelated question about tax law", QUERY], [DOCUMENTS[::-1], DOCUMENTS]
        )[1]
        for i, score in enumerate(together):
            assert abs(score - alone[i]) <= self.tolerance
            assert abs(score - next(r.score for r in mixed if r.index == i)) <= self.tolerance

    def test_rerank_sorts_by_score(self, contract_reranker: Reranker) -> None:
        scores = contract_reranker.score(QUERY, DOCUMENTS)
        results = contract_reranker.rerank(QUERY, DOCUMENTS)
        assert [r.index for r in results] == sorted(range(len(scores)), key=lambda i: -scores[i])
        assert [r.document for r in results] == [DOCUMENTS[r.index] for r in results]

    def test_async_equals_sync(self, contract_reranker: Reranker) -> None:
        async def run() -> tuple[list[float], list[list[float]]]:
            scores = await contract_reranker.ascore(QUERY, DOCUMENTS)
            batches = await contract_reranker.arerank_batch([QUERY, QUERY], [DOCUMENTS, DOCUMENTS])
            return scores, [[r.score for r in sorted(b, key=lambda r: r.index)] for b in batches]

        scores, batches = asyncio.run(run())
        sync = contract_reranker.score(QUERY, DOCUMENTS)
        for got in (scores, *batches):
            assert max(abs(a - b) for a, b in zip(got, sync, strict=True)) <= self.tolerance
