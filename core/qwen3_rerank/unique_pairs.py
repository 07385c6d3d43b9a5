"""Identical (instruction, query, document) pairs within one call, scored once.

Results merged from several retrievers repeat documents; scoring each pair once costs less, and
the copies share one score, so they tie exactly whatever batch each would have landed in (an
engine's scores agree across batch layouts only to rounding). Pure: the engine is not involved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .engines.base import ScoredDocuments, ScoreRequest

__all__ = ["Expand", "unique_pairs"]

Expand = Callable[[Sequence[ScoredDocuments]], list[ScoredDocuments]]
"""Turns the unique requests' results into one result per original request, in input order."""


def unique_pairs(requests: Sequence[ScoreRequest]) -> tuple[list[ScoreRequest], Expand, int]:
    """The requests with each distinct pair once; how to expand their results; how many pairs
    were left out as copies.

    Requests with the same query and instruction become one request; within it, each distinct
    document appears once, where it first appeared.
    """
    keys: dict[tuple[str, str], int] = {}  # (query, instruction) -> unique request
    documents: list[dict[str, int]] = []  # per unique request: document -> its position
    places: list[list[tuple[int, int]]] = []  # per original document: (request, position)
    for request in requests:
        k = keys.setdefault((request.query, request.instruction), len(keys))
        if k == len(documents):
            documents.append({})
        seen = documents[k]
        places.append([(k, seen.setdefault(d, len(seen))) for d in request.documents])
    copies = sum(len(r.documents) for r in requests) - sum(len(seen) for seen in documents)
    if copies == 0 and len(keys) == len(requests):
        return list(requests), list, 0
    unique = [
        ScoreRequest(query, list(seen), instruction)
        for (query, instruction), seen in zip(keys, documents, strict=True)
    ]

    def expand(scored: Sequence[ScoredDocuments]) -> list[ScoredDocuments]:
        return [
            ScoredDocuments(
                [scored[k].scores[i] for k, i in where], [scored[k].truncated[i] for k, i in where]
            )
            for where in places
        ]

    return unique, expand, copies
