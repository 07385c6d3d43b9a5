"""Token-budget batch planning (pure).

Memory in a forward pass grows with the tokens in it, not the number of pairs, so batches are
bounded by tokens. Sorting by length keeps padding, and so wasted compute, small.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plan_batches"]


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
