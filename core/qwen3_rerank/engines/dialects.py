"""Request and response shapes of the rerank APIs the remote engine speaks (pure).

Every parser maps results back by ``index`` and checks them: a missing, duplicated or
out-of-range index, a wrong count or a non-numeric score raises ``InvalidResponseError``, never
a silently wrong ranking. Servers that sort their results are fine: order is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidResponseError, clip

__all__ = ["DIALECTS", "SERVER_API_KEY_ENV", "Dialect"]

SERVER_API_KEY_ENV = "QWEN3_RERANK_API_KEY"  # `qwen3-rerank serve` reads it, our client sends it

Build = Callable[[str, Sequence[str], "str | None", str], dict[str, Any]]
"""(query, documents, model, instruction) -> request body."""


@dataclass(frozen=True)
class Dialect:
    """One API: where to POST, the body to send, how to read the answer."""

    name: str
    path: str
    build: Build
    results_key: str | None  # None: the body is a bare list of results
    score_key: str
    max_documents: int | None = None  # the server's own per-request limit, if it has one
    templated_by_client: bool = False  # the Qwen3 template must be applied before sending
    sends_instruction: bool = False  # the server takes an ``instruction`` field
    api_key_env: str | None = None  # where its clients conventionally find the API key

    def parse(self, payload: Any, count: int) -> list[float]:
        """Scores in input order from a response body, validated against ``count`` documents."""
        items = payload.get(self.results_key) if isinstance(payload, dict) else payload
        if self.results_key is None and not isinstance(payload, list):
            items = None
        if not isinstance(items, list):
            where = f"a {self.results_key!r} list" if self.results_key else "a list"
            raise InvalidResponseError(
                f"{self.name}: expected {where}, got {clip(repr(payload), 200)}"
            )
        if len(items) != count:
            raise InvalidResponseError(f"{self.name}: {len(items)} results for {count} documents")
        scores: list[float | None] = [None] * count
        for item in items:
            if not isinstance(item, dict):
                raise InvalidResponseError(
                    f"{self.name}: result is not an object: {clip(repr(item), 200)}"
                )
            index, score = item.get("index"), item.get(self.score_key)
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
                raise InvalidResponseError(
                    f"{self.name}: bad index {index!r} for {count} documents"
                )
            if scores[index] is not None:
                raise InvalidResponseError(f"{self.name}: index {index} appears twice")
            if (
                isinstance(score, bool)
                or not isinstance(score, (int, float))
                or not math.isfinite(score)
            ):
                raise InvalidResponseError(f"{self.name}: bad score {score!r} at index {index}")
            scores[index] = float(score)
        return [s for s in scores if s is not None]


def _with_model(body: dict[str, Any], model: str | None) -> dict[str, Any]:
    return {"model": model, **body} if model else body


def _rerank_body(
    query: str, documents: Sequence[str], model: str | None, **extra: Any
) -> dict[str, Any]:
    """The ``query, documents, top_n`` request most /rerank APIs share; all results asked for."""
    body = {"query": query, "documents": list(documents), "top_n": len(documents), **extra}
    return _with_model(body, model)


def _qwen3_body(
    query: str, documents: Sequence[str], model: str | None, instruction: str
) -> dict[str, Any]:
    """Our server's request, built with the server's own protocol model (imported here: the
    server's pydantic models are not needed by the other dialects)."""
    from ..server.protocol import RerankRequest

    fields: dict[str, Any] = {"model": model} if model else {}
    request = RerankRequest(
        query=query,
        documents=list(documents),
        instruction=instruction,
        top_n=len(documents),
        **fields,
    )
    return request.model_dump(mode="json", exclude_unset=True)


DIALECTS: dict[str, Dialect] = {
    "qwen3": Dialect(  # qwen3-rerank's own server: vLLM's shape plus the instruction
        "qwen3",
        "/v1/rerank",
        _qwen3_body,
        "results",
        "relevance_score",
        sends_instruction=True,
        api_key_env=SERVER_API_KEY_ENV,
    ),
    "vllm": Dialect(
        "vllm",
        "/v1/rerank",
        lambda q, d, m, i: _rerank_body(q, d, m),
        "results",
        "relevance_score",
        templated_by_client=True,
        api_key_env="VLLM_API_KEY",  # the variable `vllm serve` reads
    ),
    "vllm-score": Dialect(
        "vllm-score",
        "/score",
        lambda q, d, m, i: _with_model({"text_1": q, "text_2": list(d)}, m),
        "data",
        "score",
        templated_by_client=True,
        api_key_env="VLLM_API_KEY",
    ),
    "cohere": Dialect(
        "cohere",
        "/v2/rerank",
        lambda q, d, m, i: _rerank_body(q, d, m),
        "results",
        "relevance_score",
        api_key_env="CO_API_KEY",  # the cohere SDK's
    ),
    "jina": Dialect(
        "jina",
        "/v1/rerank",
        lambda q, d, m, i: _rerank_body(q, d, m, return_documents=False),
        "results",
        "relevance_score",
        api_key_env="JINA_API_KEY",  # LangChain's and LlamaIndex's Jina rerankers'
    ),
    "tei": Dialect(
        "tei",
        "/rerank",
        lambda q, d, m, i: {"query": q, "texts": list(d), "truncate": True, "return_text": False},
        None,
        "score",
        max_documents=32,
    ),
    "infinity": Dialect(
        "infinity",
        "/rerank",
        lambda q, d, m, i: _rerank_body(q, d, m, return_documents=False),
        "results",
        "relevance_score",
        max_documents=2048,  # Infinity answers 422 past it, not 413: the limit cannot be learned
    ),
}
