"""Token-budget batch planning."""

from __future__ import annotations

import random

import pytest

from qwen3_rerank.batching import plan_batches


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


def test_empty_and_bad_budget() -> None:
    assert plan_batches([], 10) == []
    with pytest.raises(ValueError, match="max_tokens"):
        plan_batches([1], 0)
