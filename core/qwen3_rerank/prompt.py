"""The official Qwen3-Reranker prompt, and token-exact truncation of the document only.

A pair is scored on ``prefix + body + suffix`` where the body is
``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}``, all encoded without
special tokens added (see the model card and ``shared/design/qwen3-reranker.md``).

The body is encoded in two parts, the query part (up to and including the newline before
``<Document>``) and the document part. The Qwen2 pre-tokenizer always ends a piece at that
newline, so the two encodings laid end to end equal the encoding of the whole body (a test
checks this against the literal model-card recipe). This split lets an engine encode and
compute the shared query part once per query, and lets truncation touch the document alone:
when a pair is too long, tokens are cut from the end of the document part, never from the
prefix, instruction, query or suffix; a query too long to leave room for a document is an
error, not a silently different prompt.

This module is pure: it takes any callable that encodes a batch of strings to token ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import ConfigurationError, InvalidInputError

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_MAX_LENGTH",
    "PREFIX",
    "SUFFIX",
    "EncodedRequest",
    "PromptEncoder",
    "format_document_part",
    "format_pair",
    "format_query_part",
    "format_sides",
]

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
DEFAULT_MAX_LENGTH = 8192

EncodeBatch = Callable[[list[str]], list[list[int]]]
"""Encodes strings to token ids with no special tokens added (``add_special_tokens=False``)."""


def format_query_part(query: str, instruction: str) -> str:
    """The body's query part: ``<Instruct>: {instruction}\\n<Query>: {query}\\n``."""
    return f"<Instruct>: {instruction}\n<Query>: {query}\n"


def format_document_part(document: str) -> str:
    """The body's document part: ``<Document>: {document}``."""
    return f"<Document>: {document}"


def format_sides(
    query: str, document_parts: Sequence[str], instruction: str
) -> tuple[str, list[str]]:
    """A query's pairs as the two strings that score APIs take (vLLM's ``score``, a plain
    vLLM server): the query side (prefix and query part, the same for every document) and each
    document's side (its document part and the suffix).

    Args:
        document_parts: :func:`format_document_part` texts, or the decoded tokens of one that
            was cut to fit.
    """
    return PREFIX + format_query_part(query, instruction), [p + SUFFIX for p in document_parts]


def format_pair(query: str, document: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The whole prompt of one pair as text (for engines and servers that take strings)."""
    query_side, (document_side,) = format_sides(
        query, [format_document_part(document)], instruction
    )
    return query_side + document_side


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """Token ids of one query and its documents.

    A pair's ids are ``query_ids + document_ids[i] + suffix_ids``: ``query_ids`` (prefix plus
    query part) is shared by every document of the query.
    """

    query_ids: list[int]
    document_ids: list[list[int]]
    suffix_ids: list[int]
    truncated: list[bool]

    def pair_ids(self, i: int) -> list[int]:
        """The full token ids of pair ``i``."""
        return self.query_ids + self.document_ids[i] + self.suffix_ids

    def pair_length(self, i: int) -> int:
        """The number of tokens of pair ``i``."""
        return len(self.query_ids) + len(self.document_ids[i]) + len(self.suffix_ids)


class PromptEncoder:
    """Builds token ids for (query, documents, instruction) under a ``max_length`` budget.

    Args:
        encode: Encodes a batch of strings without special tokens added.
        max_length: The most tokens one pair may have, template included.

    Raises:
        ConfigurationError: ``max_length`` cannot hold the template with a one-token query.
    """

    def __init__(self, encode: EncodeBatch, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._encode = encode
        prefix, suffix, empty_query, doc_head = encode(
            [PREFIX, SUFFIX, format_query_part("", ""), format_document_part("")]
        )
        self.prefix_ids = prefix
        self.suffix_ids = suffix
        # "<Document>: " ends in a space that the first document token absorbs; keeping this
        # many tokens of the document part keeps that whole head and cuts only the document.
        self._doc_head_len = len(doc_head)
        self.template_length = len(prefix) + len(suffix) + len(empty_query) + len(doc_head)
        smallest = self.template_length + 1
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < smallest:
            raise ConfigurationError(
                f"max_length must be an integer >= {smallest} (the template alone takes "
                f"{self.template_length} tokens); got {max_length!r}"
            )
        self.max_length = max_length

    def encode(self, query: str, documents: Sequence[str], instruction: str) -> EncodedRequest:
        """Encodes one query with its documents, truncating documents that do not fit.

        Raises:
            InvalidInputError: The query and instruction leave no room for a document.
        """
        texts = [format_query_part(query, instruction)]
        texts.extend(format_document_part(d) for d in documents)
        query_part, *doc_parts = self._encode(texts)
        query_ids = self.prefix_ids + query_part
        room = self.max_length - len(query_ids) - len(self.suffix_ids)
        if room < self._doc_head_len:
            raise InvalidInputError(
                f"the query and instruction take {len(query_ids) + len(self.suffix_ids)} "
                f"tokens with the template, leaving no room for a document within "
                f"max_length={self.max_length}; shorten the query or raise max_length"
            )
        truncated = [len(ids) > room for ids in doc_parts]
        document_ids = [
            ids[:room] if cut else ids for ids, cut in zip(doc_parts, truncated, strict=True)
        ]
        return EncodedRequest(query_ids, document_ids, self.suffix_ids, truncated)
