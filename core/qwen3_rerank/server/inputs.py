"""From a validated request to an engine request: everything that can be refused is refused
here, per request, before the scheduler batches it with others.

- Input a vLLM-style client already wrapped in the Qwen3 template is unwrapped, so it is
  scored once, exactly as the same text sent plain.
- Text longer than any ``max_length``-token text can be is cut by characters first (a token
  covers at most the longest vocabulary entry's characters), so a megabyte document costs no
  megabyte of tokenizing; a query or instruction that long is refused at once.
- With the engine's tokenizer (local engines): the query and instruction must leave room for a
  document (else 400), per-request truncation (``max_tokens_per_doc``,
  ``truncate_prompt_tokens``) cuts documents at a token boundary, and the prompt tokens of the
  answer's ``usage`` are counted, template included.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..engines.base import ScoreRequest
from ..errors import InvalidInputError
from ..prompt import PREFIX, SUFFIX, PromptEncoder, format_document_part
from ..reranker import Reranker

__all__ = ["Inputs", "Prepared", "unwrap_template"]

_QUERY_PART = re.compile(r"<Instruct>: (.*?)\n<Query>: (.*)\n", re.DOTALL)
_DOCUMENT_HEAD = format_document_part("")


def unwrap_template(
    query: str, documents: Sequence[str]
) -> tuple[str, list[str], str | None] | None:
    """(query, documents, instruction) inside the Qwen3 template, or ``None`` when the input
    is not wrapped in it (query and every document both)."""
    if not query.startswith(PREFIX):
        return None
    match = _QUERY_PART.fullmatch(query, len(PREFIX))
    if match is None or not all(
        d.startswith(_DOCUMENT_HEAD) and d.endswith(SUFFIX) for d in documents
    ):
        return None
    inner = [d[len(_DOCUMENT_HEAD) : len(d) - len(SUFFIX)] for d in documents]
    return match.group(2), inner, match.group(1)


@dataclass(frozen=True)
class Prepared:
    """One engine request, the tokens its prompts take, and which documents were cut."""

    request: ScoreRequest
    prompt_tokens: int
    cut: list[bool]


class Inputs:
    """Checks and prepares requests for one reranker."""

    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker
        engine = reranker.engine
        encoder = getattr(engine, "encoder", None)
        self.encoder: PromptEncoder | None = encoder if isinstance(encoder, PromptEncoder) else None
        self.tokenizer: Any = getattr(engine, "tokenizer", None) if self.encoder else None
        self.max_chars: int | None = None
        self._label_tokens = 0
        if self.encoder is not None and self.tokenizer is not None:
            longest_token = max(len(t) for t in self.tokenizer.get_vocab())
            self.max_chars = self.encoder.max_length * longest_token
            self._label_tokens = len(self.tokenizer(_DOCUMENT_HEAD.rstrip())["input_ids"])

    @property
    def max_length(self) -> int | None:
        return self.encoder.max_length if self.encoder else None

    def prepare(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
        *,
        max_tokens_per_doc: int | None = None,
        truncate_prompt_tokens: int | None = None,
    ) -> Prepared:
        """The engine request for one query and its documents.

        Raises:
            InvalidInputError: Empty or over-long query or instruction, bad text.
        """
        wrapped = unwrap_template(query, documents)
        if wrapped is not None:
            query, documents, inner_instruction = wrapped
            instruction = instruction or inner_instruction
        cut = [False] * len(documents)
        if self.max_chars is not None:
            if len(query) + len(instruction or "") > self.max_chars:
                raise InvalidInputError(
                    f"the query and instruction are longer than max_length={self.max_length} "
                    "tokens can be; shorten them"
                )
            cut = [len(d) > self.max_chars for d in documents]
            documents = [d[: self.max_chars] for d in documents]
        request = self.reranker.validate(query, documents, instruction)
        if self.encoder is None:
            return Prepared(request, 0, cut)
        # Raises InvalidInputError when the query and instruction leave no room.
        encoded = self.encoder.encode(request.query, [], request.instruction)
        fixed = len(encoded.query_ids) + len(encoded.suffix_ids)
        limits = []
        if max_tokens_per_doc is not None:
            limits.append(max_tokens_per_doc + self._label_tokens)
        if truncate_prompt_tokens is not None:
            if truncate_prompt_tokens <= fixed:
                raise InvalidInputError(
                    f"truncate_prompt_tokens={truncate_prompt_tokens} leaves no room for a "
                    f"document: the template, instruction and query take {fixed} tokens"
                )
            limits.append(truncate_prompt_tokens - fixed)
        texts = list(request.documents)
        if limits and texts:
            texts, shortened = self._cut(texts, min(limits))
            cut = [a or b for a, b in zip(cut, shortened, strict=True)]
            request = ScoreRequest(request.query, texts, request.instruction)
        counted = self.encoder.encode(request.query, texts, request.instruction)
        tokens = sum(counted.pair_length(i) for i in range(len(texts)))
        return Prepared(request, tokens, cut)

    def _cut(self, documents: list[str], limit: int) -> tuple[list[str], list[bool]]:
        """Documents whose part ``<Document>: {text}`` is cut to ``limit`` tokens."""
        parts = [format_document_part(d) for d in documents]
        offsets = self.tokenizer(parts, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        out, cut = [], []
        for document, spans in zip(documents, offsets, strict=True):
            if len(spans) <= limit:
                out.append(document)
                cut.append(False)
            else:
                end = max(spans[limit - 1][1] - len(_DOCUMENT_HEAD), 0)
                out.append(document[:end])
                cut.append(True)
        return out, cut
