"""Token-budget batch planning."""

from __future__ import annotations

import random

import pytest

from qwen3_rerank.batching import PackedPlanner, plan_batches


@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize("budget", [1, 50, 300, 10_000])
def test_every_index_once_and_within_budget(padded: bool, budget: int) -> None:
    rng = random.Random(budget)
    lengths = [rng.randint(1, 400) for _ in range(200)]
    batches = plan_batches(lengths, budget, padded=padded)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for batch in batches:
        sizes = [lengths[i] for i in batch]
        cost = max(sizes) * len(sizes) if padded else sum(sizes)
        assert cost <= budget or len(batch) == 1
        assert sizes == sorted(sizes, reverse=True)


def test_longest_first_and_padded_cost_counts_the_longest_row() -> None:
    assert plan_batches([10, 100, 50, 50], 200, padded=True) == [[1, 2], [3, 0]]
    assert plan_batches([10, 100, 50, 50], 200, padded=False) == [[1, 2, 3], [0]]


def plan_packed(
    query_of: list[int],
    lengths: list[int],
    prefixes: list[int],
    budget: int,
    first: int | None = None,
) -> list[list[int]]:
    """Every batch the planner closes, fed the documents in order, then the open one."""
    planner = PackedPlanner(budget, first)
    batches = [
        closed
        for i, (q, n) in enumerate(zip(query_of, lengths, strict=True))
        if (closed := planner.add(i, q, n, prefixes[q])) is not None
    ]
    last = planner.finish()
    return batches + ([last] if last else [])


def test_empty_and_bad_budget() -> None:
    assert plan_batches([], 10) == []
    with pytest.raises(ValueError, match="max_tokens"):
        plan_batches([1], 0)


@pytest.mark.parametrize("budget", [1, 300, 2000, 100_000])
def test_packed_plan_counts_each_prefix_once_per_batch(budget: int) -> None:
    rng = random.Random(budget)
    query_of = sorted(rng.randrange(5) for _ in range(60))
    lengths = [rng.randint(1, 300) for _ in range(60)]
    prefixes = [rng.randint(40, 90) for _ in range(5)]
    batches = plan_packed(query_of, lengths, prefixes, budget)
    assert [i for b in batches for i in b] == list(range(60))  # input order kept
    for batch in batches:
        queries = {query_of[i] for i in batch}
        cost = sum(lengths[i] for i in batch) + sum(prefixes[q] for q in queries)
        assert cost <= budget or len(batch) == 1


def test_packed_plan_shares_prefixes() -> None:
    # two queries with 50-token prefixes, four 10-token documents: one batch of 140 tokens
    assert plan_packed([0, 0, 1, 1], [10] * 4, [50, 50], 140) == [[0, 1, 2, 3]]
    assert plan_packed([0, 0, 1, 1], [10] * 4, [50, 50], 139) == [[0, 1, 2], [3]]


def test_a_smaller_first_batch_then_full_ones() -> None:
    # one query, 50-token prefix, ten 10-token documents: first batch 80 tokens, then 150
    batches = plan_packed([0] * 10, [10] * 10, [50], 150, first=80)
    assert batches == [[0, 1, 2], [3, 4, 5, 6, 7, 8, 9]]
    assert plan_packed([0] * 10, [10] * 10, [50], 150, first=1000) == [list(range(10))]
    with pytest.raises(ValueError, match="first_tokens"):
        PackedPlanner(10, 0)
