"""Token-budget batch planning (pure).

Memory in a forward pass grows with the tokens in it, not the number of pairs, so batches are
bounded by tokens. Sorting by length keeps padding, and so wasted compute, small.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["PackedPlanner", "plan_batches"]


def plan_batches(
    lengths: Sequence[int], max_tokens: int, *, padded: bool = True
) -> list[list[int]]:
    """Groups item indices into batches, longest first, each within a token budget.

    Args:
        lengths: Token count of each item.
        max_tokens: Budget per batch. An item longer than the budget gets a batch of its own.
        padded: Cost a batch as ``longest * count`` (padded rows) rather than the sum of lengths
            (packed rows).

    Returns:
        Lists of indices into ``lengths``; every index appears exactly once.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = used = 0
    for i in order:
        n = lengths[i]
        cost = max(longest, n) * (len(current) + 1) if padded else used + n
        if current and cost > max_tokens:
            batches.append(current)
            current, longest, used = [], 0, 0
        current.append(i)
        longest = max(longest, n)
        used += n
    if current:
        batches.append(current)
    return batches


class PackedPlanner:
    """Greedy packed batches, fed one document at a time (so batching can start before all
    documents are tokenized).

    A batch holds each of its queries' prefix once plus its documents' tokens, end to end with
    no padding. Documents stay in the order given, so the documents of one query share batches
    and its prefix is computed as few times as possible. A document that cannot fit even alone
    gets a batch of its own.

    ``first_tokens`` bounds the first batch alone (at most ``max_tokens``): a small first batch
    starts the GPU sooner, while the rest is still being tokenized.
    """

    def __init__(self, max_tokens: int, first_tokens: int | None = None) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if first_tokens is not None and first_tokens < 1:
            raise ValueError(f"first_tokens must be >= 1, got {first_tokens}")
        self.max_tokens = max_tokens
        self._limit = min(first_tokens or max_tokens, max_tokens)
        self._current: list[int] = []
        self._queries: set[int] = set()
        self._used = 0

    def add(self, item: int, query: int, length: int, prefix_length: int) -> list[int] | None:
        """Adds a document; returns the batch it closed, if adding it closed one."""
        cost = length + (0 if query in self._queries else prefix_length)
        closed = None
        if self._current and self._used + cost > self._limit:
            closed = self.finish()
            cost = length + prefix_length
        self._current.append(item)
        self._queries.add(query)
        self._used += cost
        return closed

    def finish(self) -> list[int] | None:
        """The open batch, if any, and a fresh start."""
        batch = self._current or None
        self._current, self._queries, self._used = [], set(), 0
        self._limit = self.max_tokens
        return batch
