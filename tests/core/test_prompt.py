"""The template, the split encoding and document-only truncation, on the real Qwen3 tokenizer."""

from __future__ import annotations

from typing import Any

import pytest

from qwen3_rerank import ConfigurationError, InvalidInputError
from qwen3_rerank.prompt import (
    DEFAULT_INSTRUCTION,
    PREFIX,
    SUFFIX,
    PromptEncoder,
    format_document_part,
    format_pair,
    format_query_part,
)

TEXTS = [
    "plain words",
    "ends with punctuation?",
    "trailing spaces   ",
    "  leading spaces",
    "line\nbreaks\r\nand\ttabs\n",
    "熊猫是中国的国宝。",
    "مرحبا بالعالم",
    "emoji 😀🐼 and ZWJ 👩‍👩‍👧",
    "<Document>: nested markers <Query>:",
    "1234567890 numbers 3.14",
    "",
    "!!!",
    "\n",
]


def _encode(tokenizer: Any) -> Any:
    return lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]


def test_template_token_counts_and_ids(tokenizer: Any) -> None:
    assert len(tokenizer.encode(PREFIX, add_special_tokens=False)) == 39
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    assert len(suffix) == 9
    assert suffix[0] == tokenizer.convert_tokens_to_ids("<|im_end|>") == 151645
    assert tokenizer.convert_tokens_to_ids("</think>") in suffix
    assert tokenizer.convert_tokens_to_ids(["yes", "no"]) == [9693, 2152]


def test_format_pair_is_the_card_template() -> None:
    text = format_pair("q?", "d.", "inst")
    assert text == PREFIX + "<Instruct>: inst\n<Query>: q?\n<Document>: d." + SUFFIX
    assert format_pair("q", "d").count(DEFAULT_INSTRUCTION) == 1


@pytest.mark.parametrize("query", TEXTS[:-3])
def test_split_encoding_equals_whole_body_encoding(tokenizer: Any, query: str) -> None:
    """Encoding query part and document part apart gives the card's whole-body ids."""
    encoder = PromptEncoder(_encode(tokenizer), max_length=8192)
    encoded = encoder.encode(query, TEXTS, "Find passages ✓")
    for i, document in enumerate(TEXTS):
        body = format_query_part(query, "Find passages ✓") + format_document_part(document)
        whole = (
            tokenizer.encode(PREFIX, add_special_tokens=False)
            + tokenizer.encode(body, add_special_tokens=False)
            + tokenizer.encode(SUFFIX, add_special_tokens=False)
        )
        assert encoded.pair_ids(i) == whole
        assert encoded.pair_length(i) == len(whole)
    assert not any(encoded.truncated)


def test_truncation_cuts_only_the_end_of_the_document(tokenizer: Any) -> None:
    encoder = PromptEncoder(_encode(tokenizer), max_length=120)
    long_doc = "the quick brown fox jumps " * 100
    encoded = encoder.encode("a query", [long_doc, "short"], DEFAULT_INSTRUCTION)
    assert encoded.truncated == [True, False]
    assert encoded.pair_length(0) == 120
    ids = encoded.pair_ids(0)
    assert ids[: len(encoder.prefix_ids)] == encoder.prefix_ids
    assert ids[-len(encoder.suffix_ids) :] == encoder.suffix_ids
    full_doc = tokenizer.encode(format_document_part(long_doc), add_special_tokens=False)
    assert encoded.document_ids[0] == full_doc[: len(encoded.document_ids[0])]
    text = tokenizer.decode(ids)
    assert text.startswith(PREFIX + format_query_part("a query", DEFAULT_INSTRUCTION))
    assert text.endswith(SUFFIX)
    assert "<Document>: the quick brown fox" in text


def test_document_that_fits_exactly_is_not_truncated(tokenizer: Any) -> None:
    probe = PromptEncoder(_encode(tokenizer), max_length=8192).encode("q", ["one two three"], "i")
    exact = probe.pair_length(0)
    encoded = PromptEncoder(_encode(tokenizer), max_length=exact).encode(
        "q", ["one two three"], "i"
    )
    assert encoded.truncated == [False]
    shorter = PromptEncoder(_encode(tokenizer), max_length=exact - 1).encode(
        "q", ["one two three"], "i"
    )
    assert shorter.truncated == [True]
    assert shorter.pair_length(0) == exact - 1


def test_query_too_long_for_max_length_is_an_error(tokenizer: Any) -> None:
    encoder = PromptEncoder(_encode(tokenizer), max_length=100)
    with pytest.raises(InvalidInputError, match="no room for a document"):
        encoder.encode("word " * 200, ["doc"], DEFAULT_INSTRUCTION)


@pytest.mark.parametrize("max_length", [0, 10, 60, -5, 2.5, True, "8192"])
def test_max_length_too_small_or_not_an_int(tokenizer: Any, max_length: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_length"):
        PromptEncoder(_encode(tokenizer), max_length=max_length)
