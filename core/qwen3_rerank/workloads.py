"""The three benchmark workloads (``qwen3-rerank bench``, benchmarks/), generated from a seed.

- rag100x256: 4 queries x 100 documents of 256 tokens;
- mixed16x100: 16 queries x 100 documents, lengths log-normal (median 200, sigma 0.7) clipped to
  [32, 1024] tokens;
- long16x4000: 1 query x 16 documents of 4000 tokens.

Queries are 20 tokens. Words are drawn from the tokenizer's vocabulary entries that are one token
with their leading space, so a document of N words is N tokens (plus the template around it).
Another seed gives fresh inputs of the same shape.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

__all__ = ["WORKLOADS", "Workload", "build", "single_token_words"]

WORKLOADS = ("rag100x256", "mixed16x100", "long16x4000")


@dataclass(frozen=True)
class Workload:
    """Queries, each with its documents."""

    name: str
    queries: list[str]
    documents: list[list[str]]  # documents[i] belong to queries[i]

    def items(self) -> list[tuple[str, list[str]]]:
        """(query, its documents) for each query."""
        return list(zip(self.queries, self.documents, strict=True))

    @property
    def pairs(self) -> int:
        return sum(len(d) for d in self.documents)


def single_token_words(tokenizer: Any, count: int = 5000, seed: int = 0) -> list[str]:
    """Alphabetic vocabulary entries that encode, with a leading space, to exactly one token."""
    words = sorted(
        w[1:]
        for w in tokenizer.get_vocab()
        if w.startswith("Ġ") and w[1:].isascii() and w[1:].isalpha() and 3 <= len(w) <= 9
    )
    random.Random(seed).shuffle(words)
    return words[:count]


def build(tokenizer: Any, seed: int = 0) -> dict[str, Workload]:
    """rag100x256, mixed16x100 and long16x4000 for ``seed``, words from ``tokenizer``'s vocabulary
    (any Qwen3 tokenizer gives the same words)."""
    words = single_token_words(tokenizer, seed=seed)
    rng = random.Random(seed)

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    def lognormal_length() -> int:
        return max(32, min(1024, round(rng.lognormvariate(mu=5.298317, sigma=0.7))))  # median 200

    return {
        "rag100x256": Workload(
            "rag100x256",
            [text(20) for _ in range(4)],
            [[text(256) for _ in range(100)] for _ in range(4)],
        ),
        "mixed16x100": Workload(
            "mixed16x100",
            [text(20) for _ in range(16)],
            [[text(lognormal_length()) for _ in range(100)] for _ in range(16)],
        ),
        "long16x4000": Workload("long16x4000", [text(20)], [[text(4000) for _ in range(16)]]),
    }
