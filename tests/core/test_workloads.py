"""The benchmark workloads: their shapes in real Qwen3 tokens, and fresh inputs per seed; the
bench's argument checks (its runs: tests/core/test_cli.py, tests/server/test_server.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from qwen3_rerank import ConfigurationError, Reranker
from qwen3_rerank.bench import bench
from qwen3_rerank.workloads import WORKLOADS, build


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> object:
    return AutoTokenizer.from_pretrained(tiny_model)


def lengths(tokenizer: object, texts: list[str]) -> list[int]:
    """Tokens of each text as it sits in the template, after "<Query>: " or "<Document>: "."""
    ids = tokenizer([" " + t for t in texts], add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    return [len(i) for i in ids]


def test_each_workload_has_its_shape_in_tokens(tokenizer: object) -> None:
    got = build(tokenizer, seed=3, names=WORKLOADS)
    assert list(got) == list(WORKLOADS)
    rag, mixed, long = got["rag100x256"], got["mixed16x100"], got["long16x4000"]
    assert (len(rag.queries), rag.pairs) == (4, 400)
    assert (len(mixed.queries), mixed.pairs) == (16, 1600)
    assert (len(long.queries), long.pairs) == (1, 16)
    few, many, long_cpu = got["query20x256"], got["query50x256"], got["long4x2000"]
    assert [(len(w.queries), w.pairs) for w in (few, many, long_cpu)] == [(1, 20), (1, 50), (1, 4)]
    assert set(lengths(tokenizer, few.documents[0] + many.documents[0])) == {256}
    assert set(lengths(tokenizer, long_cpu.documents[0])) == {2000}
    for wl in got.values():
        assert set(lengths(tokenizer, wl.queries)) == {20}
    assert set(lengths(tokenizer, [d for ds in rag.documents for d in ds])) == {256}
    assert set(lengths(tokenizer, long.documents[0])) == {4000}
    mixed_lengths = lengths(tokenizer, [d for ds in mixed.documents for d in ds])
    assert min(mixed_lengths) >= 32
    assert max(mixed_lengths) <= 1024
    assert 150 <= sorted(mixed_lengths)[len(mixed_lengths) // 2] <= 260  # median ~200


def test_a_seed_gives_the_same_inputs_and_another_seed_fresh_ones(tokenizer: object) -> None:
    a, again, other = (build(tokenizer, seed=s)["rag100x256"] for s in (1, 1, 2))
    assert a == again
    assert build(tokenizer, seed=1, names=["rag100x256"])["rag100x256"] == a  # alone: the same
    assert not set(a.queries) & set(other.queries)
    assert not {d for ds in a.documents for d in ds} & {d for ds in other.documents for d in ds}


def test_bench_refuses_unknown_workloads_and_empty_runs(
    reranker: Reranker, tokenizer: object
) -> None:
    with pytest.raises(ConfigurationError, match="unknown workload 'rag'"):
        bench(reranker, tokenizer, ["rag"])
    with pytest.raises(ConfigurationError, match="at least 1"):
        bench(reranker, tokenizer, ["rag100x256"], passes=0)
