"""The LlamaIndex postprocessor in a real query engine, on the tiny fixture model."""

from __future__ import annotations

import asyncio
import copy
import pickle
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from llama_index.postprocessor.qwen3_rerank import Qwen3Rerank
from qwen3_rerank import Reranker
from tests.integrations.corpus import QUERY, TEXTS


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    documents = [Document(text=t, metadata={"topic": f"t{i}"}) for i, t in enumerate(TEXTS)]
    return VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=8))


def make_nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata={"k": [i]}), score=0.1 * i)
        for i, t in enumerate(TEXTS)
    ]


class EventLog(BaseEventHandler):
    names: list[str] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventLog"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.names.append(event.class_name())


def test_query_engine_ranks_like_the_engine(reranker: Reranker, index: VectorStoreIndex) -> None:
    retrieved = index.as_retriever(similarity_top_k=len(TEXTS)).retrieve(QUERY)
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in retrieved]
    expected = reranker.rerank(QUERY, texts, top_n=3)
    engine = index.as_query_engine(
        llm=MockLLM(),
        similarity_top_k=len(TEXTS),
        node_postprocessors=[Qwen3Rerank(reranker=reranker, top_n=3)],
    )
    for response in (engine.query(QUERY), asyncio.run(engine.aquery(QUERY))):
        got = response.source_nodes
        assert [n.node.node_id for n in got] == [retrieved[r.index].node.node_id for r in expected]
        assert [n.score for n in got] == pytest.approx([r.score for r in expected], abs=1e-6)


def test_events_and_callbacks(reranker: Reranker) -> None:
    log = EventLog()
    root = get_dispatcher()
    root.add_event_handler(log)
    debug = LlamaDebugHandler()
    postprocessor = Qwen3Rerank(reranker=reranker, callback_manager=CallbackManager([debug]))
    try:
        postprocessor.postprocess_nodes(make_nodes(), query_str=QUERY)
        asyncio.run(postprocessor.apostprocess_nodes(make_nodes(), query_str=QUERY))
    finally:
        root.event_handlers.remove(log)
    assert log.names.count("ReRankStartEvent") == 2
    assert log.names.count("ReRankEndEvent") == 2
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 2
    assert len(pairs[0][1].payload["nodes"]) == 3


def test_new_nodes_and_inputs_untouched(reranker: Reranker) -> None:
    nodes = make_nodes()
    before = copy.deepcopy(nodes)
    out = Qwen3Rerank(reranker=reranker, top_n=None, keep_retrieval_score=True).postprocess_nodes(
        nodes, QueryBundle(QUERY)
    )
    assert [(n.node.node_id, n.score, n.node.metadata) for n in nodes] == [
        (n.node.node_id, n.score, n.node.metadata) for n in before
    ]
    expected = reranker.rerank(QUERY, [n.node.get_content(MetadataMode.EMBED) for n in nodes])
    assert [n.node.node_id for n in out] == [f"n{r.index}" for r in expected]
    for n in out:
        source = nodes[int(n.node.node_id[1:])]
        assert n is not source
        assert n.node is not source.node
        assert n.node.metadata["retrieval_score"] == source.score
        assert n.node.metadata["k"] == source.node.metadata["k"]


def test_top_n_threshold_instruction(reranker: Reranker) -> None:
    texts = [n.node.get_content(MetadataMode.EMBED) for n in make_nodes()]
    assert texts[0] != TEXTS[0]  # metadata is part of what the model reads
    full = reranker.rerank(QUERY, texts)
    assert len(Qwen3Rerank(reranker=reranker).postprocess_nodes(make_nodes(), query_str=QUERY)) == 3
    cut = full[1].score
    kept = Qwen3Rerank(reranker=reranker, top_n=5, score_threshold=cut).postprocess_nodes(
        make_nodes(), query_str=QUERY
    )
    assert [n.node.node_id for n in kept] == [f"n{r.index}" for r in full[:2]]
    instructed = Qwen3Rerank(reranker=reranker, top_n=None, instruction="Find desserts")
    scores = {
        n.node.node_id: n.score for n in instructed.postprocess_nodes(make_nodes(), query_str=QUERY)
    }
    expected = reranker.score(QUERY, texts, instruction="Find desserts")
    assert [scores[f"n{i}"] for i in range(len(TEXTS))] == pytest.approx(expected, abs=1e-6)


def test_metadata_mode_changes_the_text_scored(reranker: Reranker) -> None:
    nodes = [NodeWithScore(node=TextNode(text="bread", metadata={"about": "photosynthesis"}))]
    embed = Qwen3Rerank(reranker=reranker).postprocess_nodes(nodes, query_str=QUERY)[0].score
    none = (
        Qwen3Rerank(reranker=reranker, metadata_mode=MetadataMode.NONE)
        .postprocess_nodes(nodes, query_str=QUERY)[0]
        .score
    )
    assert none == pytest.approx(reranker.score(QUERY, ["bread"])[0], abs=1e-6)
    assert embed != pytest.approx(none, abs=1e-6)


def test_no_query_no_nodes_duplicates_long(tiny_model: Path, reranker: Reranker) -> None:
    postprocessor = Qwen3Rerank(reranker=reranker)
    with pytest.raises(ValueError, match="query"):
        postprocessor.postprocess_nodes(make_nodes())
    assert postprocessor.postprocess_nodes([], query_str=QUERY) == []
    dupes = [NodeWithScore(node=TextNode(text="same", id_=i)) for i in ("a", "b")]
    out = postprocessor.postprocess_nodes(dupes, query_str=QUERY)
    assert [n.node.node_id for n in out] == ["a", "b"]
    assert out[0].score == out[1].score
    with Reranker(tiny_model, device="cpu", max_length=128) as short:
        long_nodes = [NodeWithScore(node=TextNode(text="word " * 2000, id_="long"))]
        out = Qwen3Rerank(reranker=short).postprocess_nodes(long_nodes, query_str=QUERY)
    assert out[0].node.metadata["rerank_truncated"] is True


def test_pickling_round_trip_rebuilds_the_reranker(tiny_model: Path) -> None:
    postprocessor = Qwen3Rerank(
        model=str(tiny_model), engine_options={"device": "cpu"}, top_n=2, instruction="Find facts"
    )
    clone = pickle.loads(pickle.dumps(postprocessor))
    assert clone.model == str(tiny_model)
    assert (clone.top_n, clone.instruction, clone.engine_options) == (
        2,
        "Find facts",
        {"device": "cpu"},
    )
    assert clone.reranker is not postprocessor.reranker
    got = clone.postprocess_nodes(make_nodes(), query_str=QUERY)
    want = postprocessor.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in got] == [(n.node.node_id, n.score) for n in want]
    assert clone.to_dict()["class_name"] == "Qwen3Rerank"
    clone.reranker.close()
    postprocessor.reranker.close()
