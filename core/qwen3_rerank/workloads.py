"""The benchmark workloads (``qwen3-rerank bench``, benchmarks/), generated from a seed: the one
workload generator of the project.

On a GPU (a service's batches):

- rag100x256: 4 queries x 100 documents of 256 tokens;
- mixed16x100: 16 queries x 100 documents, lengths log-normal (median 200, sigma 0.7) clipped to
  [32, 1024] tokens;
- long16x4000: 1 query x 16 documents of 4000 tokens.

On a CPU (what a notebook user ranks):

- query20x256 and query50x256: 1 query x 20 or 50 documents of 256 tokens;
- long4x2000: 1 query x 4 documents of 2000 tokens.

Queries are 20 tokens. Words are drawn from the tokenizer's vocabulary entries that are one token
with their leading space, so a document of N words is N tokens (plus the template around it).
Another seed gives fresh inputs of the same shape.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["CPU_WORKLOADS", "GPU_WORKLOADS", "WORKLOADS", "Workload", "build", "single_token_words"]

GPU_WORKLOADS = ("rag100x256", "mixed16x100", "long16x4000")
CPU_WORKLOADS = ("query20x256", "query50x256", "long4x2000")
WORKLOADS = GPU_WORKLOADS + CPU_WORKLOADS

QUERY_TOKENS = 20


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


def _text(rng: random.Random, words: list[str], n: int) -> str:
    return " ".join(rng.choice(words) for _ in range(n))


def _lognormal_length(rng: random.Random) -> int:
    return max(32, min(1024, round(rng.lognormvariate(mu=5.298317, sigma=0.7))))  # median 200


# name -> (queries, documents per query, a document's length in tokens drawn from the rng)
_SHAPES: dict[str, tuple[int, int, Callable[[random.Random], int]]] = {
    "rag100x256": (4, 100, lambda rng: 256),
    "mixed16x100": (16, 100, _lognormal_length),
    "long16x4000": (1, 16, lambda rng: 4000),
    "query20x256": (1, 20, lambda rng: 256),
    "query50x256": (1, 50, lambda rng: 256),
    "long4x2000": (1, 4, lambda rng: 2000),
}


def build(
    tokenizer: Any, seed: int = 0, names: Iterable[str] = GPU_WORKLOADS
) -> dict[str, Workload]:
    """The workloads ``names`` for ``seed`` (each from a generator of its own, so asking for
    fewer gives the same inputs), words from ``tokenizer``'s vocabulary (any Qwen3 tokenizer
    gives the same words)."""
    words = single_token_words(tokenizer, seed=seed)
    out = {}
    for name in names:
        queries, per_query, length = _SHAPES[name]
        rng = random.Random(f"{seed}/{name}")
        qs = [_text(rng, words, QUERY_TOKENS) for _ in range(queries)]
        docs = [[_text(rng, words, length(rng)) for _ in range(per_query)] for _ in range(queries)]
        out[name] = Workload(name, qs, docs)
    return out
