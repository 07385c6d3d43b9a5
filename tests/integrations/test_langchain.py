"""The LangChain compressor in real LangChain pipelines, on the tiny fixture model."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import ValidationError

from langchain_qwen3_rerank import Qwen3Rerank
from qwen3_rerank import InvalidInputError, Reranker
from tests.integrations.corpus import QUERY, TEXTS


def make_documents() -> list[Document]:
    return [
        Document(page_content=t, id=f"doc-{i}", metadata={"source": f"s{i}", "tags": ["a"]})
        for i, t in enumerate(TEXTS)
    ]


@pytest.fixture(scope="module")
def retriever() -> Any:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(make_documents())
    return store.as_retriever(search_kwargs={"k": len(TEXTS)})


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[tuple[str | None, UUID | None]] = []
        self.ends = 0
        self.errors = 0

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.starts.append((kwargs.get("name"), kwargs.get("parent_run_id")))

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self.ends += 1

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors += 1


def test_contextual_compression_retriever_ranks_like_the_engine(
    reranker: Reranker, retriever: Any
) -> None:
    pipeline = ContextualCompressionRetriever(
        base_compressor=Qwen3Rerank(reranker=reranker, top_n=3), base_retriever=retriever
    )
    retrieved = retriever.invoke(QUERY)
    expected = reranker.rerank(QUERY, [d.page_content for d in retrieved], top_n=3)
    got = pipeline.invoke(QUERY)
    assert [d.id for d in got] == [retrieved[r.index].id for r in expected]
    assert [d.metadata["relevance_score"] for d in got] == pytest.approx(
        [r.score for r in expected], abs=1e-6
    )
    assert all(d.metadata["source"] == f"s{d.id.split('-')[1]}" for d in got)  # type: ignore[union-attr]


def test_async_pipeline_and_lcel_chain(reranker: Reranker, retriever: Any) -> None:
    pipeline = ContextualCompressionRetriever(
        base_compressor=Qwen3Rerank(reranker=reranker, top_n=2), base_retriever=retriever
    )
    chain = pipeline | RunnableLambda(lambda docs: "\n".join(d.page_content for d in docs))
    sync_docs = pipeline.invoke(QUERY)
    async_docs = asyncio.run(pipeline.ainvoke(QUERY))
    assert [d.id for d in async_docs] == [d.id for d in sync_docs]
    assert chain.invoke(QUERY) == "\n".join(d.page_content for d in sync_docs)
    assert asyncio.run(chain.ainvoke(QUERY)) == chain.invoke(QUERY)


def test_callbacks_see_the_rerank_as_a_child_run(reranker: Reranker, retriever: Any) -> None:
    pipeline = ContextualCompressionRetriever(
        base_compressor=Qwen3Rerank(reranker=reranker), base_retriever=retriever
    )
    recorder = Recorder()
    pipeline.invoke(QUERY, config={"callbacks": [recorder]})
    asyncio.run(pipeline.ainvoke(QUERY, config={"callbacks": [recorder]}))
    names = [name for name, _ in recorder.starts]
    assert names.count("Qwen3Rerank") == 2
    assert all(parent is not None for name, parent in recorder.starts if name == "Qwen3Rerank")
    assert recorder.ends >= 2
    with pytest.raises(InvalidInputError):
        Qwen3Rerank(reranker=reranker).compress_documents(make_documents(), "  ", [recorder])
    assert recorder.errors == 1


def test_new_documents_ids_kept_metadata_copied_inputs_untouched(reranker: Reranker) -> None:
    documents = make_documents()
    before = copy.deepcopy(documents)
    out = Qwen3Rerank(reranker=reranker, top_n=None).compress_documents(documents, QUERY)
    assert documents == before
    assert all("relevance_score" not in d.metadata for d in documents)
    assert sorted(d.id for d in out) == sorted(d.id for d in documents)  # type: ignore[type-var]
    for d in out:
        source = next(s for s in documents if s.id == d.id)
        assert d is not source
        assert d.metadata["tags"] == source.metadata["tags"]
        assert d.metadata["tags"] is not source.metadata["tags"]
        assert d.page_content == source.page_content


def test_top_n_threshold_and_order(reranker: Reranker) -> None:
    documents = make_documents()
    full = reranker.rerank(QUERY, TEXTS)
    out = Qwen3Rerank(reranker=reranker, top_n=None).compress_documents(documents, QUERY)
    assert [d.id for d in out] == [f"doc-{r.index}" for r in full]
    cut = full[2].score
    kept = Qwen3Rerank(reranker=reranker, top_n=10, score_threshold=cut).compress_documents(
        documents, QUERY
    )
    assert [d.id for d in kept] == [f"doc-{r.index}" for r in full[:3]]
    default = Qwen3Rerank(reranker=reranker).compress_documents(documents, QUERY)
    assert len(default) == 3


def test_instruction_is_used(reranker: Reranker) -> None:
    instruction = "Find dessert recipes"
    out = Qwen3Rerank(reranker=reranker, instruction=instruction, top_n=None).compress_documents(
        make_documents(), QUERY
    )
    expected = reranker.score(QUERY, TEXTS, instruction=instruction)
    for d in out:
        assert d.metadata["relevance_score"] == pytest.approx(expected[int(d.id[4:])], abs=1e-6)  # type: ignore[index]


def test_empty_duplicates_and_long_documents(tiny_model: Path, reranker: Reranker) -> None:
    compressor = Qwen3Rerank(reranker=reranker, top_n=None)
    assert compressor.compress_documents([], QUERY) == []
    dupes = [Document(page_content="same", id="a"), Document(page_content="same", id="b")]
    out = compressor.compress_documents(dupes, QUERY)
    assert [d.id for d in out] == ["a", "b"]
    assert out[0].metadata["relevance_score"] == out[1].metadata["relevance_score"]
    with Reranker(tiny_model, device="cpu", max_length=128) as short:
        long_docs = [Document(page_content="word " * 2000, id="long"), Document(page_content="x")]
        out = Qwen3Rerank(reranker=short, top_n=None).compress_documents(long_docs, QUERY)
    flags = {d.id: d.metadata["rerank_truncated"] for d in out}
    assert flags == {"long": True, None: False}


def test_built_from_model_serialises_without_the_model(tiny_model: Path) -> None:
    compressor = Qwen3Rerank(model=str(tiny_model), engine_options={"device": "cpu"}, top_n=2)
    dumped = compressor.model_dump()
    assert dumped == {
        "model": str(tiny_model),
        "engine_options": {"device": "cpu"},
        "top_n": 2,
        "score_threshold": None,
        "instruction": None,
    }
    assert json.loads(compressor.model_dump_json()) == dumped  # no model object dragged along
    assert len(compressor.compress_documents(make_documents(), QUERY)) == 2
    compressor.reranker.close()


def test_bad_settings_are_rejected(reranker: Reranker) -> None:
    with pytest.raises(ValidationError):
        Qwen3Rerank(reranker=reranker, top_n=0)
    with pytest.raises(ValidationError):
        Qwen3Rerank(reranker=reranker, score_threshold=1.5)
    with pytest.raises(ValidationError):
        Qwen3Rerank(reranker=reranker, bogus=True)
    with pytest.raises(ValueError, match="reranker"):
        Qwen3Rerank()
