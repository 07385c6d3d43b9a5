"""Real third-party clients from PyPI, unmodified, against a real server: the scores they
get equal the in-process engine's."""

from __future__ import annotations

from pathlib import Path

import cohere
import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_cohere import CohereRerank as LangchainCohereRerank
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.cohere_rerank import CohereRerank as LlamaCohereRerank
from llama_index.postprocessor.jinaai_rerank import JinaRerank

from qwen3_rerank import Reranker

from .serving import DOCS, KEY, QUERY


def expected(reranker: Reranker, top_n: int) -> list[tuple[int, float]]:
    return [(r.index, r.score) for r in reranker.rerank(QUERY, DOCS, top_n=top_n)]


def assert_same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)


def test_cohere_sdk_v2_client(served: str, tiny_model: Path, reranker: Reranker) -> None:
    client = cohere.ClientV2(api_key=KEY, base_url=served)
    answer = client.rerank(model=tiny_model.name, query=QUERY, documents=DOCS, top_n=3)
    assert_same([(r.index, r.relevance_score) for r in answer.results], expected(reranker, 3))


class _FixedRetriever(BaseRetriever):
    """Returns the same documents for every query: the reranker's input."""

    documents: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return self.documents


def test_langchain_cohere_rerank_in_a_compression_retriever(
    served: str, tiny_model: Path, reranker: Reranker
) -> None:
    compressor = LangchainCohereRerank(
        cohere_api_key=KEY, base_url=served, model=tiny_model.name, top_n=3
    )
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor,
        base_retriever=_FixedRetriever(documents=[Document(page_content=d) for d in DOCS]),
    )
    found = retriever.invoke(QUERY)
    got = [(DOCS.index(d.page_content), d.metadata["relevance_score"]) for d in found]
    assert_same(got, expected(reranker, 3))


@pytest.mark.parametrize("postprocessor", ["cohere", "jina"])
def test_llama_index_rerank_postprocessors(
    served: str, tiny_model: Path, reranker: Reranker, postprocessor: str
) -> None:
    if postprocessor == "cohere":
        rerank = LlamaCohereRerank(top_n=3, model=tiny_model.name, api_key=KEY, base_url=served)
    else:
        rerank = JinaRerank(top_n=3, model=tiny_model.name, api_key=KEY, base_url=served + "/v1")
    nodes = [NodeWithScore(node=TextNode(text=d)) for d in DOCS]
    ranked = rerank.postprocess_nodes(nodes, QueryBundle(QUERY))
    got = [(DOCS.index(n.node.get_content()), n.score) for n in ranked]
    assert_same([(i, float(s or 0.0)) for i, s in got], expected(reranker, 3))
