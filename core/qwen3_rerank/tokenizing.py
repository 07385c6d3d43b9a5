"""Prompt parts to token ids through a fast tokenizer's Rust backend, long texts on all cores.

The backend's ``encode_batch_fast`` encodes the texts of one call in parallel, one text per
thread, so a piece holding one or two long documents kept one or two cores busy while the GPU
waited for it (docs/performance.md has the measurements).

A long text is therefore cut into pieces of about :data:`CHUNK_CHARS` characters, each cut just
before a space that lies between two letters, and the pieces are encoded in the same parallel
call, their ids laid end to end. That gives the very same ids as encoding the text whole,
because of how Qwen2's tokenizer works (:func:`splits_exactly` checks the tokenizer is one):

- NFC normalization cannot join a letter and a following space;
- its pre-tokenizer regex always ends a piece at a letter followed by a space, and starts one
  at a space followed by a letter (`` ?letters``);
- byte-level BPE merges only within those pieces;
- no added (special) token contains a space or strips the spaces next to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["CHUNK_CHARS", "QWEN2_SPLIT", "batch_encoder", "split_text", "splits_exactly"]

EncodeBatch = Callable[[list[str]], list[list[int]]]

# Qwen2's pre-tokenizer regex, as in its tokenizer.json.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
# About 300-500 tokens of prose: a 4000-token document becomes ~12 pieces, one per core.
CHUNK_CHARS = 2048
# A space with a letter on each side (checked with str.isalpha, Unicode's letter categories).
_CUT = re.compile(r"(?<=[^\W\d_]) (?=[^\W\d_])")


def split_text(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """``text`` cut just before spaces between two letters: every piece but the last has at
    least ``size`` characters, and the last fewer than ``2 * size`` unless no such space is
    left (a text with none stays whole). ``"".join`` of the pieces is ``text``."""
    pieces, start = [], 0
    while len(text) - start >= 2 * size:
        cut = _CUT.search(text, start + size)
        while cut is not None and not (
            text[cut.start() - 1].isalpha() and text[cut.start() + 1].isalpha()
        ):  # \w-based letters also take a few numeric characters (e.g. "²")
            cut = _CUT.search(text, cut.start() + 1)
        if cut is None:
            break
        pieces.append(text[start : cut.start()])
        start = cut.start()
    pieces.append(text[start:])
    return pieces


def splits_exactly(backend: Any) -> bool:
    """Whether ``backend`` (a ``tokenizers.Tokenizer``) is Qwen2's kind, for which encoding
    :func:`split_text`'s pieces gives the ids of the whole text (see the module docstring)."""
    config = json.loads(backend.to_str())
    normalizer = config.get("normalizer")
    pre = config.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [])
    qwen2_pre = (
        len(steps) == 2
        and steps[0].get("type") == "Split"
        and steps[0].get("pattern") == {"Regex": QWEN2_SPLIT}
        and steps[0].get("behavior") == "Isolated"
        and not steps[0].get("invert")
        and steps[1].get("type") == "ByteLevel"
        and not steps[1].get("add_prefix_space")
        and not steps[1].get("use_regex")
    )
    added_ok = all(
        not any(c.isspace() for c in token["content"])
        and not (token.get("lstrip") or token.get("rstrip") or token.get("single_word"))
        for token in config.get("added_tokens", [])
    )
    return (
        normalizer in (None, {"type": "NFC"})
        and qwen2_pre
        and (config.get("model") or {}).get("type") == "BPE"
        and added_ok
    )


def batch_encoder(tokenizer: Any) -> EncodeBatch:
    """Encodes a batch of strings with no special tokens added: through the Rust backend
    (the same ids, without the masks and dicts transformers' call builds: ~20% of a
    100-document query's tokenizing), long texts cut into pieces where that is exact."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer

        def encode_slow(texts: list[str]) -> list[list[int]]:
            ids: list[list[int]] = tokenizer(texts, add_special_tokens=False)["input_ids"]
            return ids

        return encode_slow
    exact = splits_exactly(backend)

    def encode(texts: list[str]) -> list[list[int]]:
        if not exact or all(len(t) < 2 * CHUNK_CHARS for t in texts):
            return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        pieces, owner = [], []
        for i, text in enumerate(texts):
            for piece in split_text(text):
                pieces.append(piece)
                owner.append(i)
        encodings = backend.encode_batch_fast(pieces, add_special_tokens=False)
        ids: list[list[int]] = [[] for _ in texts]
        for i, e in zip(owner, encodings, strict=True):
            ids[i].extend(e.ids)
        return ids

    return encode
