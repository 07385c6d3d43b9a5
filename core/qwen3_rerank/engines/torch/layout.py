"""How one batch's sequences lie in the packed rows: :func:`pack` (pure, on the host).

Every document of a query shares the template head, the instruction and the query. A batch
lays the head out once, then each query's prefix once, then every document's own tokens (and
the template's suffix), end to end with no padding. A prefix attends causally to itself and
the head; a document attends to the head, its query's prefix, and causally to itself.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .kernels.tiles import (
    BLOCK_M,
    FINAL_BLOCK_M,
    KEY_BLOCK,
    final_tile_table,
    key_block,
    longest_first,
    query_block,
    tile_table,
)

__all__ = ["PackedBatch", "pack"]


@dataclasses.dataclass
class PackedBatch:
    """Index tensors describing one packed batch (built on the CPU, then moved)."""

    tokens: torch.Tensor  # [T] token ids: the head, all prefixes, then all documents
    positions: torch.Tensor  # [T] rotary positions
    key_index: torch.Tensor  # [Tk] rows of the packed keys/values each sequence attends to
    cu_q: torch.Tensor  # [S+1] int32 query-side sequence offsets
    cu_k: torch.Tensor  # [S+1] int32 key-side sequence offsets
    max_q: int
    max_k: int
    last: torch.Tensor  # [n_docs] row of each document's last token
    tiles: torch.Tensor  # [n, 8] int32: the prefix kernel's tiles (kernels.tiles)
    final_tiles: torch.Tensor  # [n_docs, 8] the same for the last layer's rows
    tile_rows: int = BLOCK_M  # query rows per tile
    key_block: int = KEY_BLOCK  # keys per step of the prefix kernel (kernels.tiles.key_block)
    docs_keys_from: int = 0  # the first document's first row in key_index
    docs_max_k: int = 0  # the most keys of one document
    row_queries: bool = True  # queries come for every packed row (not so in the last layer)
    plans: dict[str, Any] = dataclasses.field(default_factory=dict)  # an attention's, per batch

    def final(self) -> PackedBatch:
        """The last layer's attention: only each document's last token is read after it, so
        one query row per document, over all of that document's keys."""
        docs_from = self.cu_q.numel() - 1 - self.last.numel()  # sequences before documents
        cu_k = self.cu_k[docs_from:] - self.docs_keys_from
        cu_q = torch.arange(len(self.last) + 1, dtype=cu_k.dtype, device=cu_k.device)
        return PackedBatch(
            tokens=self.last,  # tokens and positions: not read by attention
            positions=self.last,
            key_index=self.key_index[self.docs_keys_from :],
            cu_q=cu_q,
            cu_k=cu_k,
            max_q=1,
            max_k=self.docs_max_k,
            last=cu_q[:-1],
            tiles=self.final_tiles,
            final_tiles=self.final_tiles[:0],  # no layer after it
            tile_rows=FINAL_BLOCK_M,
            key_block=self.key_block,
            row_queries=False,
        )


def pack(
    prefixes: Sequence[Sequence[int]],
    documents: Sequence[tuple[int, Sequence[int]]],
    head: Sequence[int] = (),
    tile_rows: int | None = None,
    group: int = 2,
) -> PackedBatch:
    """Lays out the shared head, the prefixes and the documents end to end.

    Args:
        prefixes: Token ids of each query's shared prefix (after ``head``).
        documents: ``(prefix index, token ids)`` of each document (document part + suffix).
        head: Token ids that start every prefix (the template's system part): laid out once
            for the whole batch, and every prefix and document attends to them.
        tile_rows: Query rows per tile of the prefix attention kernel (default: as
            :func:`.kernels.tiles.query_block` chooses for the documents' lengths).
        group: The model's query heads per key/value head, which a tile holds for each of
            its rows (2 for Qwen3-Reranker-0.6B, 4 for 4B and 8B).
    """
    h = len(head)
    p_len = np.array([len(p) for p in prefixes], dtype=np.int64)
    d_len = np.array([len(d) for _, d in documents], dtype=np.int64)
    d_query = np.array([q for q, _ in documents], dtype=np.int64)
    p_start = h + np.concatenate(([0], np.cumsum(p_len)[:-1]))
    d_start = h + p_len.sum() + np.concatenate(([0], np.cumsum(d_len)[:-1]))
    tokens = np.fromiter(  # chain: no Python frame per token
        itertools.chain(head, *prefixes, *(d for _, d in documents)),
        dtype=np.int64,
        count=int(h + p_len.sum() + d_len.sum()),
    )
    head_rows = np.arange(h)
    positions = np.concatenate(
        [head_rows]
        + [np.arange(h, h + n) for n in p_len]
        + [np.arange(h + p_len[q], h + p_len[q] + n) for q, n in zip(d_query, d_len, strict=True)]
    )
    prefix_rows = [np.arange(s, s + n) for s, n in zip(p_start, p_len, strict=True)]
    key_index = np.concatenate(
        [head_rows]
        + [np.concatenate((head_rows, rows)) for rows in prefix_rows]
        + [
            np.concatenate((head_rows, prefix_rows[q], np.arange(s, s + n)))
            for q, s, n in zip(d_query, d_start, d_len, strict=True)
        ]
    )
    q_lens = np.concatenate(([h] if h else [], p_len, d_len)).astype(np.int64)
    k_lens = np.concatenate(([h] if h else [], h + p_len, h + p_len[d_query] + d_len))
    k_lens = k_lens.astype(np.int64)
    docs_from = len(q_lens) - len(d_len)  # sequences before the documents
    # context ranges of each sequence for the prefix kernel: the head, then the query prefix
    ctx = np.zeros((len(q_lens), 4), dtype=np.int64)
    ctx[docs_from - len(p_len) :, 1] = h
    ctx[docs_from:, 2] = p_start[d_query]
    ctx[docs_from:, 3] = p_start[d_query] + p_len[d_query]
    cu_q = np.concatenate(([0], np.cumsum(q_lens))).astype(np.int32)  # each sequence's start
    rows = query_block(d_len, group) if tile_rows is None else tile_rows
    return PackedBatch(
        tokens=torch.from_numpy(tokens),
        positions=torch.from_numpy(positions),
        key_index=torch.from_numpy(key_index),
        cu_q=torch.from_numpy(cu_q),
        cu_k=torch.from_numpy(np.concatenate(([0], np.cumsum(k_lens))).astype(np.int32)),
        max_q=int(q_lens.max()),
        max_k=int(k_lens.max()),
        last=torch.from_numpy(d_start + d_len - 1),
        docs_keys_from=int(k_lens[:docs_from].sum()),
        docs_max_k=int(k_lens[docs_from:].max(initial=0)),
        tiles=torch.from_numpy(longest_first(tile_table(cu_q[:-1], q_lens, ctx, rows))),
        tile_rows=rows,
        key_block=key_block(d_len),
        final_tiles=torch.from_numpy(
            final_tile_table(d_start + d_len - 1, d_start, ctx[docs_from:])
        ),
    )
