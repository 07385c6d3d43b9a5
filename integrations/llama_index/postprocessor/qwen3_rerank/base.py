"""``Qwen3Rerank``: a LlamaIndex ``BaseNodePostprocessor`` over ``qwen3_rerank.Reranker``.

Use it in ``index.as_query_engine(node_postprocessors=[Qwen3Rerank(...)])``. It builds new
``NodeWithScore`` objects (the caller's are untouched), emits ``ReRankStartEvent`` /
``ReRankEndEvent`` and the ``RERANKING`` callback event, and has a real async path.
"""

from __future__ import annotations

from typing import Any

from qwen3_rerank import Reranker, RerankResult

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as exc:  # pragma: no cover - depends on the environment
    from qwen3_rerank import MissingDependencyError

    raise MissingDependencyError("llama-index-core", "llama-index") from exc

__all__ = ["Qwen3Rerank"]

dispatcher = get_dispatcher(__name__)


class Qwen3Rerank(BaseNodePostprocessor):
    """Reranks retrieved nodes with Qwen3-Reranker and keeps the best.

    Args:
        model: Hub id or local folder to build the reranker from (with ``engine_options``).
        reranker: Or a ``qwen3_rerank.Reranker`` to use (any engine: torch, vLLM, remote).
        top_n: How many nodes to keep (``None``: all).
        score_threshold: Drop nodes scoring below this (in [0, 1]).
        instruction: Task instruction for the model (``None``: the reranker's default).
        keep_retrieval_score: Copy the retriever's score to ``metadata["retrieval_score"]``.
        metadata_mode: Which metadata goes into the text the model reads.
        engine_options: Options for ``Reranker(model, **engine_options)``.

    Pickling keeps the settings and rebuilds the reranker from ``model`` and ``engine_options``.
    """

    model: str | None = Field(default=None, description="Hub id or local model folder.")
    top_n: int | None = Field(default=3, ge=1, description="Number of nodes to keep.")
    score_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Minimum score of a kept node."
    )
    instruction: str | None = Field(default=None, description="Task instruction.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the retriever's score in metadata['retrieval_score']."
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="Metadata included in the scored text."
    )
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="Options for building the Reranker."
    )

    _reranker: Reranker = PrivateAttr()

    def __init__(
        self,
        model: str | None = None,
        reranker: Reranker | None = None,
        top_n: int | None = 3,
        score_threshold: float | None = None,
        instruction: str | None = None,
        keep_retrieval_score: bool = False,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        engine_options: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if reranker is not None and model is None:
            model = reranker.model
        super().__init__(
            model=model,
            top_n=top_n,
            score_threshold=score_threshold,
            instruction=instruction,
            keep_retrieval_score=keep_retrieval_score,
            metadata_mode=metadata_mode,
            engine_options=dict(engine_options or {}),
            callback_manager=callback_manager or CallbackManager([]),
        )
        if reranker is None:
            if model is None:
                raise ValueError("pass reranker=Reranker(...) or model='<hub id or folder>'")
            reranker = Reranker(model, **self.engine_options)
        self._reranker = reranker

    @classmethod
    def class_name(cls) -> str:
        return "Qwen3Rerank"

    @property
    def reranker(self) -> Reranker:
        """The ``Reranker`` doing the scoring."""
        return self._reranker

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = self._start(nodes, query_bundle)
        if not nodes:
            return self._end([])
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._payload(nodes, query)
        ) as event:
            results = self._reranker.rerank(query, self._texts(nodes), **self._options())
            return self._finish(nodes, results, event)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = self._start(nodes, query_bundle)
        if not nodes:
            return self._end([])
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._payload(nodes, query)
        ) as event:
            results = await self._reranker.arerank(query, self._texts(nodes), **self._options())
            return self._finish(nodes, results, event)

    def _finish(
        self, nodes: list[NodeWithScore], results: list[RerankResult], event: Any
    ) -> list[NodeWithScore]:
        out = self._scored_nodes(nodes, results)
        event.on_end(payload={EventPayload.NODES: out})
        return self._end(out)

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> str:
        if query_bundle is None:
            raise ValueError("Qwen3Rerank needs a query: pass query_bundle or query_str")
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=self.top_n or len(nodes),
                model_name=self.model or "",
            )
        )
        return query_bundle.query_str

    def _end(self, nodes: list[NodeWithScore]) -> list[NodeWithScore]:
        dispatcher.event(ReRankEndEvent(nodes=nodes))
        return nodes

    def _payload(self, nodes: list[NodeWithScore], query: str) -> dict[str, Any]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model or "",
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }

    def _texts(self, nodes: list[NodeWithScore]) -> list[str]:
        return [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]

    def _options(self) -> dict[str, Any]:
        return {
            "top_n": self.top_n,
            "score_threshold": self.score_threshold,
            "instruction": self.instruction,
        }

    def _scored_nodes(
        self, nodes: list[NodeWithScore], results: list[RerankResult]
    ) -> list[NodeWithScore]:
        """New NodeWithScore objects (and node copies) in rank order; inputs untouched."""
        out = []
        for r in results:
            source = nodes[r.index]
            node = source.node.model_copy(deep=True)
            if self.keep_retrieval_score:
                node.metadata["retrieval_score"] = source.score
            node.metadata["rerank_truncated"] = r.truncated
            out.append(NodeWithScore(node=node, score=r.score))
        return out
