"""``Qwen3Rerank``: a LangChain ``BaseDocumentCompressor`` over ``qwen3_rerank.Reranker``.

Drop it into ``ContextualCompressionRetriever(base_compressor=Qwen3Rerank(...), ...)``. It returns
new ``Document`` objects (same ``id``, deep-copied metadata plus ``relevance_score``), never
touches the caller's, has a real async path, and reports each rerank to callbacks as a run.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, Field, PrivateAttr

from qwen3_rerank import Reranker, RerankResult

try:
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager, Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
except ImportError as exc:  # pragma: no cover - depends on the environment
    from qwen3_rerank import MissingDependencyError

    raise MissingDependencyError("langchain-core", "langchain") from exc

__all__ = ["Qwen3Rerank"]


class Qwen3Rerank(BaseDocumentCompressor):
    """Reranks retrieved documents with Qwen3-Reranker and keeps the best.

    Args:
        reranker: A ``qwen3_rerank.Reranker`` to use (any engine: torch, vLLM, remote).
        model: Or a Hub id / folder to build one from, with ``engine_options``.

    Example:
        ```python
        from langchain_classic.retrievers import ContextualCompressionRetriever

        retriever = ContextualCompressionRetriever(
            base_compressor=Qwen3Rerank(model="Qwen/Qwen3-Reranker-0.6B", top_n=3),
            base_retriever=vectorstore.as_retriever(search_kwargs={"k": 20}),
        )
        ```
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: str | None = None
    """Hub id or local folder to build the reranker from, when no ``reranker`` is given."""
    engine_options: dict[str, Any] = Field(default_factory=dict)
    """Options for ``Reranker(model, **engine_options)``: engine, device, dtype, max_length, ..."""
    top_n: int | None = Field(default=3, ge=1)
    """How many documents to keep (``None``: all)."""
    score_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Drop documents scoring below this (in [0, 1])."""
    instruction: str | None = None
    """Task instruction for the model (``None``: the reranker's default)."""

    _reranker: Reranker = PrivateAttr()

    def __init__(self, *, reranker: Reranker | None = None, **data: Any) -> None:
        if reranker is not None and data.get("model") is None:
            data["model"] = reranker.model
        super().__init__(**data)
        if reranker is None:
            if self.model is None:
                raise ValueError("pass reranker=Reranker(...) or model='<hub id or folder>'")
            reranker = Reranker(self.model, **self.engine_options)
        self._reranker = reranker

    @property
    def reranker(self) -> Reranker:
        """The ``Reranker`` doing the scoring."""
        return self._reranker

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Returns the best documents for ``query``, best first, each with its score."""
        run = CallbackManager.configure(inheritable_callbacks=callbacks).on_chain_start(
            None, {"query": query, "documents": len(documents)}, name=type(self).__name__
        )
        try:
            results = self._reranker.rerank(
                query, [d.page_content for d in documents], **self._options()
            )
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        out = _scored_documents(documents, results)
        run.on_chain_end({"documents": out})
        return out

    def _options(self) -> dict[str, Any]:
        return {
            "top_n": self.top_n,
            "score_threshold": self.score_threshold,
            "instruction": self.instruction,
        }

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async ``compress_documents``: the model runs off the event loop."""
        run = await AsyncCallbackManager.configure(inheritable_callbacks=callbacks).on_chain_start(
            None, {"query": query, "documents": len(documents)}, name=type(self).__name__
        )
        try:
            results = await self._reranker.arerank(
                query, [d.page_content for d in documents], **self._options()
            )
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        out = _scored_documents(documents, results)
        await run.on_chain_end({"documents": out})
        return out


def _scored_documents(documents: Sequence[Document], results: list[RerankResult]) -> list[Document]:
    """New Documents in rank order; ``id`` kept, metadata deep-copied, score added."""
    out = []
    for r in results:
        source = documents[r.index]
        metadata = copy.deepcopy(source.metadata)
        metadata["relevance_score"] = r.score
        metadata["rerank_truncated"] = r.truncated
        out.append(source.model_copy(update={"metadata": metadata}))
    return out
