"""The value a rerank returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RerankResult"]


@dataclass(frozen=True, slots=True)
class RerankResult:
    """One scored document.

    Attributes:
        index: Position of the document in the caller's list.
        score: Relevance in [0, 1]: P("yes") at the last token of the official template.
        document: The document text as the caller gave it (never the truncated text).
        truncated: True when the document was shortened to fit ``max_length``.
    """

    index: int
    score: float
    document: str
    truncated: bool = False
