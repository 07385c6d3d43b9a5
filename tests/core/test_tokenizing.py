"""Long texts encoded in pieces give the whole texts' ids, on the real Qwen3 tokenizer."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from qwen3_rerank.tokenizing import CHUNK_CHARS, batch_encoder, split_text, splits_exactly

# Fragments that stress the pre-tokenizer around spaces: contractions, runs of spaces, tabs
# and newlines, digits, punctuation, combining marks (NFC), letters of several scripts, text
# with no spaces (CJK), emoji, and special tokens written into the text.
FRAGMENTS = [
    "word",
    "it's",
    "they'LL",
    "  ",
    "\t",
    "\n\n",
    "\r\n",
    "3.14159",
    "2²",
    "x_y",
    "(parenthesis)",
    "end.",
    "e\u0301te\u0301",
    "Ångström",
    "Привет",
    "Ωμέγα",
    "熊猫是中国的国宝。",
    "مرحبا",
    "😀🐼",
    "<|im_end|>",
    "<think>",
    "<Document>:",
    "ǅ",
]


def _long_text(seed: int, chars: int = 5 * CHUNK_CHARS) -> str:
    rng = random.Random(seed)
    parts, size = [], 0
    while size < chars:
        part = (
            rng.choice(FRAGMENTS) if rng.random() < 0.5 else rng.choice(["alpha", "Beta", "\u03b3"])
        )
        parts.append(part)
        size += len(part) + 1
    return " ".join(parts)


def test_short_texts_get_transformers_ids(tokenizer: Any) -> None:
    texts = [
        "<Document>: plain text ",
        "光合作用是植物制造食物的方式。 emoji 🌱 and tabs\tand\nnewlines",
        "<Query>: a literal <|im_start|> and <think> inside text",
        "",
    ]
    want = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert batch_encoder(tokenizer)(texts) == want


def test_long_texts_in_pieces_get_the_whole_texts_ids(tokenizer: Any) -> None:
    assert splits_exactly(tokenizer.backend_tokenizer)
    texts = [_long_text(seed) for seed in range(40)] + ["short", "<Document>: " + "ab " * 3000]
    assert all(len(split_text(t)) > 2 for t in texts[:40])  # these are cut
    want = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert batch_encoder(tokenizer)(texts) == want


def test_split_text_cuts_only_at_a_space_between_letters() -> None:
    text = _long_text(0)
    pieces = split_text(text)
    assert "".join(pieces) == text
    assert all(len(p) >= CHUNK_CHARS for p in pieces[:-1])
    for before, after in itertools.pairwise(pieces):
        assert before[-1].isalpha()
        assert after[0] == " "
        assert after[1].isalpha()
    # no space between two letters: the text stays whole, whatever its length
    for whole in ("熊猫" * 3000, "1 2 3 " * 2000, "word² " * 2000, "a\nb\n" * 3000):
        assert split_text(whole) == [whole]


def _variant(tokenizer: Any, change: Any) -> PreTrainedTokenizerFast:
    """The real tokenizer with its tokenizer.json changed by ``change(config)``."""
    config = json.loads(tokenizer.backend_tokenizer.to_str())
    change(config)
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(config)))


def _strip_after_word(config: dict[str, Any]) -> None:
    """An added token that eats the spaces after it."""
    config["added_tokens"].append(
        {
            "id": len(config["model"]["vocab"]) + len(config["added_tokens"]),
            "content": "alpha",
            "single_word": False,
            "lstrip": False,
            "rstrip": True,
            "normalized": False,
            "special": False,
        }
    )


def _other_split(config: dict[str, Any]) -> None:
    config["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+|\S+"


@pytest.mark.parametrize("change", [_strip_after_word, _other_split])
def test_other_tokenizers_encode_texts_whole(tokenizer: Any, change: Any) -> None:
    """Tokenizers for which cutting would change the ids are recognized and never cut:
    e.g. an added token that strips the spaces after it, as "alpha" does here."""
    other = _variant(tokenizer, change)
    assert not splits_exactly(other.backend_tokenizer)
    texts = [_long_text(seed) for seed in range(3)]
    want = other(texts, add_special_tokens=False)["input_ids"]
    assert batch_encoder(other)(texts) == want
    if change is _strip_after_word:  # cutting would not have been exact for this one
        cut = [[i for p in split_text(t) for i in other.encode(p)] for t in texts]
        assert cut != want
