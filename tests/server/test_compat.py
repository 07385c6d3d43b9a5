"""Compatibility: vLLM's score API, TEI's and the seed design's request shapes, option fields
honoured, served model names, usage, the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwen3_rerank import Reranker

from .serving import AUTH, DOCS, QUERY

LONG_DOC = " ".join(f"word{i} about leaves and light" for i in range(60))


def post(url: str, path: str, body: dict[str, Any]) -> Any:
    answer = httpx.post(url + path, json=body, headers=AUTH, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def by_index(results: list[dict[str, Any]], key: str = "relevance_score") -> list[float]:
    return [r[key] for r in sorted(results, key=lambda r: r["index"])]


@pytest.mark.parametrize("path", ["/score", "/v1/score"])
def test_vllm_score_api(served: str, reranker: Reranker, path: str) -> None:
    answer = post(served, path, {"text_1": QUERY, "text_2": DOCS})
    assert answer["object"] == "list"
    assert [d["object"] for d in answer["data"]] == ["score"] * len(DOCS)
    assert by_index(answer["data"], "score") == pytest.approx(reranker.score(QUERY, DOCS), abs=1e-5)
    assert answer["usage"]["total_documents"] == len(DOCS)
    pairs = post(served, path, {"text_1": [QUERY, "banana bread"], "text_2": DOCS[:2]})
    want = [reranker.score(QUERY, DOCS[:1])[0], reranker.score("banana bread", DOCS[1:2])[0]]
    assert by_index(pairs["data"], "score") == pytest.approx(want, abs=1e-5)


def test_tei_request_on_rerank_gets_teis_answer(served: str, reranker: Reranker) -> None:
    answer = post(served, "/rerank", {"query": QUERY, "texts": DOCS, "return_text": True})
    want = reranker.rerank(QUERY, DOCS)
    assert isinstance(answer, list)
    assert [a["index"] for a in answer] == [r.index for r in want]
    assert [a["score"] for a in answer] == pytest.approx([r.score for r in want], abs=1e-5)
    assert [a["text"] for a in answer] == [r.document for r in want]


def test_batched_queries_of_the_seed_design(served: str, reranker: Reranker) -> None:
    queries = [QUERY, "banana bread"]
    lists = [DOCS, DOCS[::-1]]
    answer = post(served, "/v1/rerank/batch", {"queries": queries, "documents_list": lists})
    assert len(answer["results"]) == 2
    for results, query, documents in zip(answer["results"], queries, lists, strict=True):
        want = reranker.score(query, documents)
        assert by_index(results) == pytest.approx(want, abs=1e-5)
    assert answer["usage"]["total_documents"] == 10


def test_custom_instruction_is_the_instruction(served: str, reranker: Reranker) -> None:
    instruction = "Find dessert recipes"
    answer = post(
        served, "/v1/rerank", {"query": QUERY, "documents": DOCS, "custom_instruction": instruction}
    )
    want = reranker.score(QUERY, DOCS, instruction=instruction)
    assert by_index(answer["results"]) == pytest.approx(want, abs=1e-5)


def test_the_short_model_name_is_served(served: str, tiny_model: Path) -> None:
    post(served, "/v1/rerank", {"query": QUERY, "documents": DOCS, "model": tiny_model.name})
    post(served, "/v1/rerank", {"query": QUERY, "documents": DOCS, "model": str(tiny_model)})


def test_max_tokens_per_doc_cuts_each_document(
    served: str, reranker: Reranker, tokenizer: Any
) -> None:
    """Scored as the document's first 7 tokens, counted after the ``<Document>:`` label."""
    label = len(tokenizer("<Document>:", add_special_tokens=False)["input_ids"])
    ids = tokenizer("<Document>: " + LONG_DOC, add_special_tokens=False)["input_ids"]
    first_tokens = tokenizer.decode(ids[label : label + 7]).lstrip(" ")
    answer = post(
        served, "/v1/rerank", {"query": QUERY, "documents": [LONG_DOC], "max_tokens_per_doc": 7}
    )
    want = reranker.score(QUERY, [first_tokens])
    assert by_index(answer["results"]) == pytest.approx(want, abs=1e-5)
    assert want != pytest.approx(reranker.score(QUERY, [LONG_DOC]), abs=1e-5)


@pytest.fixture(scope="module")
def short_reranker(tiny_model: Path) -> Iterator[Reranker]:
    with Reranker(tiny_model, device="cpu", dtype="float32", max_length=120) as rr:
        yield rr


def test_truncate_prompt_tokens_scores_as_a_shorter_max_length(
    served: str, short_reranker: Reranker
) -> None:
    documents = [LONG_DOC, DOCS[0]]
    answer = post(
        served,
        "/v1/rerank",
        {"query": QUERY, "documents": documents, "truncate_prompt_tokens": 120},
    )
    want = short_reranker.score(QUERY, documents)
    assert by_index(answer["results"]) == pytest.approx(want, abs=1e-5)
    assert answer["usage"]["prompt_tokens"] <= 2 * 120


def test_openapi_documents_bodies_errors_and_the_bearer_scheme(served: str) -> None:
    spec = httpx.get(served + "/openapi.json").json()
    rerank = spec["paths"]["/v1/rerank"]["post"]
    body = rerank["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/RerankRequest"}
    assert {"200", "400", "401", "404", "413", "415", "422", "500", "503"} <= set(
        rerank["responses"]
    )
    assert rerank["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert {"/v1/rerank/batch", "/v1/score", "/health", "/v1/models"} <= set(spec["paths"])


def test_a_megabyte_document_scores_as_its_first_max_length_tokens(
    served: str, reranker: Reranker
) -> None:
    """The server cuts it by characters before tokenizing; the score is the in-process one,
    which tokenizes the whole text and truncates by tokens."""
    huge = "leaves turn light into sugar " * 70_000  # 2 MB
    answer = post(served, "/v1/rerank", {"query": QUERY, "documents": [huge, DOCS[0]]})
    want = reranker.score(QUERY, [huge, DOCS[0]])
    assert by_index(answer["results"]) == pytest.approx(want, abs=1e-5)


def test_repeated_documents_tie_exactly(served: str, reranker: Reranker) -> None:
    """Results merged from several retrievers repeat documents: each copy gets the same score,
    whichever packed batch it would have landed in."""
    documents = [DOCS[0], DOCS[1], DOCS[0], DOCS[2], DOCS[1]]
    answer = post(served, "/v1/rerank", {"query": QUERY, "documents": documents})
    scores = by_index(answer["results"])
    assert scores[0] == scores[2]
    assert scores[1] == scores[4]
    assert scores == pytest.approx(reranker.score(QUERY, documents), abs=1e-5)
