"""Packed layout and the attention implementations agree with each other."""

from __future__ import annotations

import pytest
import torch

from qwen3_rerank.engines import packed
from qwen3_rerank.engines.packed import attention_grouped, attention_loop, pack


def test_pack_layout() -> None:
    batch = pack([[1, 2, 3], [4]], [(0, [5, 6]), (1, [7]), (0, [8, 9, 10])])
    assert batch.tokens.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert batch.positions.tolist() == [0, 1, 2, 0, 3, 4, 1, 3, 4, 5]
    assert batch.cu_q.tolist() == [0, 3, 4, 6, 7, 10]
    assert batch.cu_k.tolist() == [0, 3, 4, 9, 11, 17]
    # each document's keys: its query's prefix rows, then its own rows
    assert batch.key_index.tolist() == [0, 1, 2, 3, 0, 1, 2, 4, 5, 3, 6, 0, 1, 2, 7, 8, 9]
    assert batch.last.tolist() == [5, 6, 9]
    assert (batch.max_q, batch.max_k) == (3, 6)


def test_pack_lays_the_shared_head_out_once() -> None:
    batch = pack([[3], [4]], [(0, [5, 6]), (1, [7])], head=[1, 2])
    assert batch.tokens.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert batch.positions.tolist() == [0, 1, 2, 2, 3, 4, 3]
    # sequences: the head, each prefix after it, each document after its prefix
    assert batch.cu_q.tolist() == [0, 2, 3, 4, 6, 7]
    assert batch.cu_k.tolist() == [0, 2, 5, 8, 13, 17]
    assert batch.key_index.tolist() == [0, 1, 0, 1, 2, 0, 1, 3, 0, 1, 2, 4, 5, 0, 1, 3, 6]
    assert batch.last.tolist() == [5, 6]
    # the last layer: one query row per document (its last token), all of its keys
    final = batch.final()
    assert final.cu_q.tolist() == [0, 1, 2]
    assert final.cu_k.tolist() == [0, 5, 9]
    assert final.key_index.tolist() == [0, 1, 2, 4, 5, 0, 1, 3, 6]
    assert (final.max_q, final.max_k) == (1, 5)


@pytest.mark.parametrize(
    ("elements", "padding", "groups"),
    [(2**20, float("inf"), 1), (2**20, 1.5, 6), (50, float("inf"), 12)],  # one, default, small
)
def test_grouped_attention_equals_the_per_sequence_loop(
    monkeypatch: pytest.MonkeyPatch, elements: int, padding: float, groups: int
) -> None:
    monkeypatch.setattr(packed, "_GROUP_ELEMENTS", elements)
    monkeypatch.setattr(packed, "_PADDING_LIMIT", padding)
    gen = torch.Generator().manual_seed(0)
    prefixes = [[1] * 7, [2] * 3, [3] * 11]
    docs = [(i % 3, [4] * (1 + (5 * i) % 13)) for i in range(9)]
    batch = pack(prefixes, docs)
    tq, tk = int(batch.cu_q[-1]), int(batch.key_index.numel())
    q = torch.randn(tq, 4, 8, generator=gen)
    k = torch.randn(tq, 2, 8, generator=gen)[batch.key_index]
    v = torch.randn(tq, 2, 8, generator=gen)[batch.key_index]
    assert k.shape[0] == tk
    want = attention_loop(q, k, v, batch, 8**-0.5)
    got = attention_grouped(q, k, v, batch, 8**-0.5)
    assert torch.allclose(got, want, atol=1e-6)
    assert len(batch.attention_groups(q.device, q.dtype)) == groups


def test_fp8_matmul_tracks_the_bf16_product() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(37, 64, generator=gen).to(torch.bfloat16)
    w = (torch.randn(48, 64, generator=gen) * torch.linspace(0.01, 3, 48)[:, None]).bfloat16()
    quantized, scale = packed.quantize_fp8(w)
    assert quantized.dtype == torch.float8_e4m3fn
    assert scale.shape == (1, 48)
    # each row uses the format's range: its largest entry maps to the largest FP8 value
    assert torch.allclose(quantized.float().abs().amax(dim=1), torch.full((48,), 448.0))
    want = x.float() @ w.float().t()
    got = packed._matmul(x, (quantized, scale)).float()
    assert got.dtype == torch.float32
    error = (got - want).norm() / want.norm()
    assert error < 0.05
