"""The vLLM engine on a real GPU with vLLM installed (skipped elsewhere).

Random weights with the exact Qwen3-Reranker-0.6B config and the real tokenizer. Run on the H100
with vLLM 0.26 (shared/tools/vllm-wheels); the output is committed under benchmarks/results/.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from qwen3_rerank import Reranker
from qwen3_rerank.prompt import DEFAULT_INSTRUCTION, format_document_part
from qwen3_rerank.random_model import build_random_model
from qwen3_rerank.tokenizing import split_text
from tests.core.engine_contract import DOCUMENTS, QUERY, EngineContract
from tests.gpu.test_gpu_engine import spearman, workload

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
        reason="needs CUDA and vLLM",
    ),
]


@pytest.fixture(scope="module")
def model_06b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_model(tmp_path_factory.mktemp("m") / "0.6b", "0.6b", dtype="bfloat16")


@pytest.fixture(scope="module")
def vllm_reranker(model_06b: Path) -> Iterator[Reranker]:
    with Reranker(model_06b, engine="vllm") as rr:
        yield rr


class TestVllmContract(EngineContract):
    tolerance = 2e-2  # vLLM batches by its own schedule, in bf16
    # A repeated call hits vLLM's prefix cache: cached keys/values instead of recomputed ones
    # (on the H100 the two calls differed; bit-identical on the H200 run).
    repeat_tolerance = 2e-2

    @pytest.fixture
    def contract_reranker(self, vllm_reranker: Reranker) -> Reranker:
        return vllm_reranker


def test_parity_with_the_torch_engine(model_06b: Path, vllm_reranker: Reranker) -> None:
    queries, docs = workload()
    with Reranker(model_06b, engine="torch", device="cuda", dtype="float32", fast=False) as ref:
        want = [ref.score(q, d) for q, d in zip(queries, docs, strict=True)]
    got = [vllm_reranker.score(q, d) for q, d in zip(queries, docs, strict=True)]
    for g, w in zip(got, want, strict=True):
        assert max(abs(a - b) for a, b in zip(g, w, strict=True)) <= 0.02
        assert spearman(g, w) >= 0.99


def test_long_documents_tokenized_in_pieces_agree_with_the_torch_engine(
    model_06b: Path, vllm_reranker: Reranker
) -> None:
    """The engine tokenizes long documents in pieces through vLLM's own tokenizer object
    (qwen3_rerank.tokenizing): the same ids as the whole documents, the same scores."""
    queries, docs = workload(seed=1)
    long_docs = [" ".join(docs[0][i : i + 6]) for i in range(0, 36, 6)]
    assert all(len(split_text(d)) > 2 for d in long_docs)
    encoded = vllm_reranker.engine.encoder.encode(  # type: ignore[attr-defined]
        queries[0], long_docs, DEFAULT_INSTRUCTION
    )
    tokenizer = AutoTokenizer.from_pretrained(model_06b)
    whole = tokenizer([format_document_part(d) for d in long_docs], add_special_tokens=False)
    assert encoded.document_ids == whole["input_ids"]
    with Reranker(model_06b, engine="torch", device="cuda", dtype="float32", fast=False) as ref:
        want = ref.score(queries[0], long_docs)
    got = vllm_reranker.score(queries[0], long_docs)
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 0.02


def test_whole_gpu_memory_with_defaults_is_at_most_8_gib(vllm_reranker: Reranker) -> None:
    vllm_reranker.score(QUERY, DOCUMENTS * 50)
    used = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    print(json.dumps({"whole_gpu_mib_with_vllm_defaults": int(used)}))
    assert int(used) <= 8 * 1024


def test_a_user_built_llm_is_used(model_06b: Path, vllm_reranker: Reranker) -> None:
    llm = vllm_reranker.engine.llm  # type: ignore[attr-defined]
    with Reranker(llm=llm) as rr:
        assert rr.engine.llm is llm  # type: ignore[attr-defined]
        assert rr.score(QUERY, DOCUMENTS) == pytest.approx(
            vllm_reranker.score(QUERY, DOCUMENTS), abs=1e-3
        )
