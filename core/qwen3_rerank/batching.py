"""Token-budget batch planning (pure).

Memory in a forward pass grows with the tokens in it, not the number of pairs, so batches are
bounded by tokens. Sorting by length keeps padding, and so wasted compute, small.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plan_batches", "plan_packed"]


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


def plan_packed(
    query_of: Sequence[int], lengths: Sequence[int], prefix_lengths: Sequence[int], max_tokens: int
) -> list[list[int]]:
    """Groups documents into packed batches that share their queries' prefixes.

    A batch holds each of its queries' prefix once plus its documents' tokens, end to end with
    no padding. Documents stay in input order, so the documents of one query share batches and
    its prefix is computed as few times as possible.

    Args:
        query_of: For each document, the index of its query.
        lengths: For each document, its own token count (document part and suffix).
        prefix_lengths: For each query, the token count of its shared prefix.
        max_tokens: Budget of packed tokens per batch; a document that cannot fit even alone
            gets a batch of its own.

    Returns:
        Lists of document indices; every index appears exactly once.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    batches: list[list[int]] = []
    current: list[int] = []
    queries: set[int] = set()
    used = 0
    for i, n in enumerate(lengths):
        q = query_of[i]
        cost = n + (0 if q in queries else prefix_lengths[q])
        if current and used + cost > max_tokens:
            batches.append(current)
            current, queries, used = [], set(), 0
            cost = n + prefix_lengths[q]
        current.append(i)
        queries.add(q)
        used += cost
    if current:
        batches.append(current)
    return batches
