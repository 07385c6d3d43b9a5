"""The prefix attention kernel's tile table and key step, from a batch's layout (pure, numpy).

The table has eight int32 per tile, ``q_start, q_end, diag, own, ctx0_start, ctx0_end,
ctx1_start, ctx1_end``: query rows ``[q_start, min(q_end, q_start + BLOCK_M))``; query row
``q_start + j`` sits at key row ``diag + j`` and sees keys ``[own, diag + j]`` and both context
ranges (the template head and the query prefix). The tile sizes and key steps were chosen by
measurement: docs/how-it-works.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "BLOCK_M",
    "FINAL_BLOCK_M",
    "KEY_BLOCK",
    "LONG_KEY_BLOCK",
    "LONG_TILE",
    "final_tile_table",
    "key_block",
    "longest_first",
    "num_warps",
    "query_block",
    "tile_table",
]

BLOCK_M = 32  # query rows per tile for short documents (times the heads sharing a key/value head)
KEY_BLOCK = 32  # keys per step for short documents: every block in one masked loop
FINAL_BLOCK_M = 8  # the last layer reads one row per document: one small tile each
LONG_TILE = 128  # query rows times heads per tile for long documents
LONG_KEY_BLOCK = 64  # keys per step for long documents: whole blocks unmasked, then the edge
LONG_DOCUMENTS = 512  # tokens: a batch's mean document length, weighted by length
LAUNCH = {"warps": 4, "long_warps": 8, "num_stages": 3}  # long_warps: for long tiles
FIELDS = 8


def tile_table(
    seg_start: np.ndarray[Any, Any],
    seg_len: np.ndarray[Any, Any],
    ctx: np.ndarray[Any, Any],
    block_m: int = BLOCK_M,
) -> np.ndarray[Any, Any]:
    """Tiles of ``block_m`` rows for packed sequences.

    Args:
        seg_start, seg_len: Each sequence's first packed row and length.
        ctx: ``[S, 4]`` its context ranges ``ctx0_start, ctx0_end, ctx1_start, ctx1_end``
            (empty ranges have start == end); adjacent ranges are merged into one.
    """
    ctx = ctx.astype(np.int64).copy()
    joined = (ctx[:, 1] == ctx[:, 2]) & (ctx[:, 2] < ctx[:, 3])
    ctx[joined, 1] = ctx[joined, 3]
    ctx[joined, 2:] = ctx[joined, 3:4]
    n_tiles = -(-seg_len // block_m)
    seq = np.repeat(np.arange(len(seg_len)), n_tiles)
    first_tile = np.concatenate(([0], np.cumsum(n_tiles)[:-1]))
    within = np.arange(len(seq)) - np.repeat(first_tile, n_tiles)
    q_start = seg_start[seq] + within * block_m
    table = np.empty((len(seq), FIELDS), dtype=np.int32)
    table[:, 0] = q_start
    table[:, 1] = (seg_start + seg_len)[seq]
    table[:, 2] = q_start
    table[:, 3] = seg_start[seq]
    table[:, 4:] = ctx[seq]
    return table


def longest_first(table: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The tiles reordered by the keys each one reads, most first (ties in table order).

    The GPU starts programs in grid order: in document order, a causal document's longest
    tiles came last and ran alone at the end of the launch. Longest first, the last to start
    are the shortest, and the SMs finish together."""
    keys = table[:, 2] - table[:, 3] + table[:, 5] - table[:, 4] + table[:, 7] - table[:, 6]
    out: np.ndarray[Any, Any] = table[np.argsort(-keys, kind="stable")]
    return out


def final_tile_table(
    last: np.ndarray[Any, Any], own: np.ndarray[Any, Any], ctx: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """One tile per document for the last layer, whose queries are the documents' last rows
    gathered in order (query row ``i`` is packed row ``last[i]``)."""
    table = tile_table(np.arange(len(last)), np.ones(len(last), dtype=np.int64), ctx, 1)
    table[:, 2] = last
    table[:, 3] = own
    return table


def is_long(lengths: np.ndarray[Any, Any]) -> bool:
    """Whether a batch's documents of these lengths are long: their mean length, each
    weighted by its own length (as the attention work grows with it), is at least
    :data:`LONG_DOCUMENTS`."""
    n = lengths.astype(np.float64)
    return bool(n.sum() > 0) and float((n * n).sum() / n.sum()) >= LONG_DOCUMENTS


def key_block(lengths: np.ndarray[Any, Any]) -> int:
    """Keys per step for a batch of documents of these lengths: :data:`LONG_KEY_BLOCK` when
    they are long (:func:`is_long`), else :data:`KEY_BLOCK`. The key block also sets the
    kernel's loop: every block masked with :data:`KEY_BLOCK`, the whole blocks unmasked with
    :data:`LONG_KEY_BLOCK`."""
    return LONG_KEY_BLOCK if is_long(lengths) else KEY_BLOCK


def query_block(lengths: np.ndarray[Any, Any], group: int) -> int:
    """Query rows per tile for a batch of documents of these lengths, ``group`` query heads
    sharing each key/value head: as many as make :data:`LONG_TILE` rows times heads when they
    are long (:func:`is_long`), else :data:`BLOCK_M`."""
    return max(1, LONG_TILE // group) if is_long(lengths) else BLOCK_M


def num_warps(rows: int, block_n: int) -> int:
    """Warps for a tile of ``rows`` query rows times heads stepping ``block_n`` keys at a time:
    ``LAUNCH["long_warps"]`` for the long documents' tiles of :data:`LONG_TILE` rows or more,
    else ``LAUNCH["warps"]``."""
    return LAUNCH["long_warps" if block_n >= LONG_KEY_BLOCK and rows >= LONG_TILE else "warps"]
