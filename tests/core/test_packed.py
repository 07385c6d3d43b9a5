"""Packed layout and the attention implementations agree with each other."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qwen3_rerank.engines.torch import attention, layers
from qwen3_rerank.engines.torch.attention import GROUPED, LOOP, PREFIX
from qwen3_rerank.engines.torch.kernels.gated_mlp import CONFIG as gated_mlp_config
from qwen3_rerank.engines.torch.kernels.gated_mlp import fits as gated_mlp_fits
from qwen3_rerank.engines.torch.kernels.gated_mlp import gated_mlp
from qwen3_rerank.engines.torch.kernels.gated_mlp import launch as gated_mlp_launch
from qwen3_rerank.engines.torch.kernels.prefix_attention import prefix_attention
from qwen3_rerank.engines.torch.kernels.tiles import num_warps
from qwen3_rerank.engines.torch.layout import pack
from qwen3_rerank.engines.torch.model import PackedQwen3
from qwen3_rerank.engines.torch.transfer import moved, on_device


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


def test_prefix_attention_tiles() -> None:
    """Each sequence in tiles of at most 32 rows; a document sees the head and its query's
    prefix (one range where they are adjacent) and itself causally. The tiles that read the
    most keys come first (ties in packed order)."""
    batch = pack([[3], [4] * 2], [(0, [5] * 70), (1, [7])], head=[1, 2])
    # q_start, q_end, diag, own, ctx0 start/end, ctx1 start/end
    assert batch.tiles.tolist() == [
        [69, 75, 69, 5, 0, 3, 3, 3],  # document 0's rows 69-74: 3 context keys, 65-70 own
        [37, 75, 37, 5, 0, 3, 3, 3],  # its rows 37-68, own keys from row 5
        [75, 76, 75, 75, 0, 2, 3, 5],  # document 1: the head, then prefix 1
        [5, 75, 5, 5, 0, 3, 3, 3],  # document 0, rows 5-36: head + prefix 0 as one range
        [2, 3, 2, 2, 0, 2, 0, 0],  # prefix 0 (row 2): the head
        [3, 5, 3, 3, 0, 2, 0, 0],  # prefix 1 (rows 3-4): the head
        [0, 2, 0, 0, 0, 0, 0, 0],  # the head: itself only
    ]
    # the last layer: query row i is document i's last token
    assert batch.final_tiles.tolist() == [[0, 1, 74, 5, 0, 3, 3, 3], [1, 2, 75, 75, 0, 2, 3, 5]]
    assert batch.final().tiles is batch.final_tiles


def test_long_documents_take_tiles_of_128_rows_times_heads_and_64_keys_a_step() -> None:
    short = pack([[1] * 20], [(0, [2] * 268)] * 25)
    long = pack([[1] * 20], [(0, [2] * 4062)] * 2)
    mixed = pack([[1] * 20], [(0, [2] * 4062), *[(0, [2] * 100)] * 40])  # work: mostly long
    assert (short.key_block, long.key_block, mixed.key_block) == (32, 64, 64)
    assert (short.tile_rows, long.tile_rows, mixed.tile_rows) == (32, 64, 64)
    # 4B and 8B: four query heads a key/value head, so half the rows make a tile as tall
    four_heads = [
        pack([[1] * 20], docs, group=4).tile_rows
        for docs in ([(0, [2] * 268)] * 25, [(0, [2] * 4062)] * 2)
    ]
    assert four_heads == [32, 32]
    edge = [pack([[1]], [(0, [2] * n)] * 9) for n in (511, 512)]
    assert [(b.tile_rows, b.key_block) for b in edge] == [(32, 32), (64, 64)]
    assert long.final().key_block == 64
    # long documents' tiles run on 8 warps; short ones and the last layer's on 4
    assert [num_warps(128, 64), num_warps(128, 32), num_warps(16, 64)] == [8, 4, 4]
    # a document of 4062 rows in 64-row tiles: 64 tiles, the last one of 30 rows
    doc_tiles = long.tiles[long.tiles[:, 3] == int(long.last[0]) - 4061]
    assert len(doc_tiles) == 64
    assert min(int(t[1] - t[0]) for t in doc_tiles) == 30


# Without CUDA, Triton's interpreter runs the kernel on the CPU (tests/conftest.py); fp32 there,
# the 16-bit types it runs in on a GPU (where fp32 matmuls would go through TF32).
CUDA = torch.cuda.is_available()
KERNEL_DTYPES = [torch.float16, torch.bfloat16] if CUDA else [torch.float32, torch.float16]


@pytest.mark.parametrize("rope_q", [False, True], ids=["q-ready", "q-normed-in-kernel"])
@pytest.mark.parametrize(
    ("head", "tile_rows", "key_block", "group"),
    [
        ([], 32, 32, 2),
        ([9] * 5, 32, 32, 2),
        ([9] * 5, 32, 64, 2),
        ([9] * 5, 64, 64, 2),
        ([9] * 5, 32, 64, 4),
    ],
    ids=["", "head", "head-64-keys", "head-64-rows-64-keys", "4-heads-64-keys"],
)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_prefix_attention_kernel_equals_the_per_sequence_loop(
    head: list[int], tile_rows: int, key_block: int, group: int, dtype: torch.dtype, rope_q: bool
) -> None:
    """The Triton kernel reads the packed rows in place and matches the reference on every
    layer shape: several queries, documents longer than a tile, and the last layer's one row
    per document, in tiles of 32 or 64 rows, stepping through keys 32 or 64 at a time (64:
    the context, then whole blocks unmasked, then the causal edge), with 2 query heads a
    key/value head (0.6B) or 4 (4B, 8B). With ``rope_q`` it gets the raw q projection and
    applies the q-norm and RoPE (at each row's own position) itself."""
    pytest.importorskip("triton")
    device = torch.device("cuda" if CUDA else "cpu")
    gen = torch.Generator().manual_seed(0)
    prefixes = [[1] * 7, [2] * 3, [3] * 11]
    docs = [(i % 3, [4] * (1 + (37 * i) % 150)) for i in range(7)]
    packed = pack(prefixes, docs, head, tile_rows=tile_rows)
    batch = on_device(dataclasses.replace(packed, key_block=key_block), device)
    rows = int(batch.cu_q[-1])
    q, k, v = (torch.randn(rows, h, 16, generator=gen).to(device, dtype) for h in (2 * group, 2, 2))
    weight = (1 + torch.rand(16, generator=gen)).to(device, dtype)
    freqs = batch.positions.float()[:, None] * 0.3 ** torch.arange(8, device=device)
    angles = torch.cat((freqs, freqs), dim=-1)
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    ready = layers.rotate(  # the model's q-norm and RoPE, in fp32
        layers.rms_norm(q.float(), weight.float(), 1e-6),
        cos.float()[:, None],
        sin.float()[:, None],
    )
    final = batch.final()
    tolerance = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    for rows_of, part in ((slice(None), batch), (batch.last, final)):
        want = LOOP(ready[rows_of], k.float(), v.float(), part, 0.25)
        if rope_q:
            rope = (weight, cos, sin, 1e-6)
            tiles, rows, keys = part.tiles, part.tile_rows, part.key_block
            got = prefix_attention(
                q[rows_of], k, v, tiles, 0.25, block_m=rows, block_n=keys, rope_q=rope
            )
        else:
            got = PREFIX(ready[rows_of].to(dtype), k, v, part, 0.25)
        assert got.dtype == dtype
        assert torch.allclose(got.float(), want, atol=tolerance)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_prefix_attention_kernel_output_does_not_depend_on_the_tile_order(
    dtype: torch.dtype,
) -> None:
    """Each tile writes only its own rows, from the same keys in the same steps, so the order
    the tiles are launched in (longest first, packed order, any other) changes no bit."""
    pytest.importorskip("triton")
    device = torch.device("cuda" if CUDA else "cpu")
    gen = torch.Generator().manual_seed(0)
    batch = on_device(
        pack([[1] * 7, [2] * 3], [(i % 2, [4] * (40 + 29 * i)) for i in range(5)]), device
    )
    rows = int(batch.cu_q[-1])
    q, k, v = (torch.randn(rows, h, 16, generator=gen).to(device, dtype) for h in (4, 2, 2))
    packed_order = batch.tiles[torch.argsort(batch.tiles[:, 0])]
    shuffled = batch.tiles[torch.randperm(len(batch.tiles), generator=gen).to(device)]
    assert not torch.equal(packed_order, batch.tiles)  # longest first is not packed order

    def attend(tiles: torch.Tensor) -> torch.Tensor:
        return prefix_attention(
            q, k, v, tiles, 0.25, block_m=batch.tile_rows, block_n=batch.key_block
        )

    got = attend(batch.tiles)
    assert torch.equal(attend(packed_order), got)
    assert torch.equal(attend(shuffled), got)


@pytest.mark.parametrize("rows", [1, 37, 300])
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_gated_mlp_kernel_equals_the_unfused_mlp(rows: int, dtype: torch.dtype) -> None:
    """One kernel for the gate/up matmul and the SiLU gate gives the unfused MLP's values:
    fewer rows than a tile, and several tiles with a partial last one; two tiles of columns,
    two steps of the reduction."""
    pytest.importorskip("triton")
    device = torch.device("cuda" if CUDA else "cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 128, generator=gen).to(device, dtype)
    weight = (torch.randn(2 * 256, 128, generator=gen) / 11).to(device, dtype)
    assert gated_mlp_fits(x, weight)
    got = gated_mlp(x, weight)
    want = layers.silu_gate(x.float(), weight.float())
    assert got.shape == (rows, 256)
    assert got.dtype == dtype
    tolerance = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}[dtype]
    assert torch.allclose(got.float(), want, atol=tolerance, rtol=tolerance)
    # two programs stepping through all the tiles, as on a GPU with fewer SMs than tiles
    small = {**gated_mlp_config, "BLOCK_M": 32, "BLOCK_N": 64}
    stepped = gated_mlp_launch(x, weight, small, programs=2)
    assert torch.allclose(stepped.float(), want, atol=tolerance, rtol=tolerance)
    # gate and up are rounded to the model dtype first, as the unfused path stores them (on
    # the H100 the two agreed bit for bit: docs/performance.md)
    if dtype != torch.float32:
        unfused = layers.silu_gate(x, weight).float()
        assert torch.allclose(got.float(), unfused, atol=tolerance, rtol=tolerance)


def test_gated_mlp_kernel_takes_only_whole_tiles() -> None:
    x = torch.zeros(5, 128)
    assert not gated_mlp_fits(x, torch.zeros(2 * 200, 128))  # 200 columns: no whole tile
    assert not gated_mlp_fits(x, torch.zeros(2 * 256, 96))  # 96 inputs: no whole step
    assert not gated_mlp_fits(x[:, :64], torch.zeros(2 * 256, 128))  # shapes disagree
    assert not gated_mlp_fits(torch.zeros(128, 5).t(), torch.zeros(2 * 256, 5))


@pytest.mark.parametrize(
    ("elements", "padding", "groups"),
    [(2**20, float("inf"), 1), (2**20, 1.5, 6), (50, float("inf"), 12)],  # one, default, small
)
def test_grouped_attention_equals_the_per_sequence_loop(
    monkeypatch: pytest.MonkeyPatch, elements: int, padding: float, groups: int
) -> None:
    monkeypatch.setattr(attention, "GROUP_ELEMENTS", elements)
    monkeypatch.setattr(attention, "PADDING_LIMIT", padding)
    gen = torch.Generator().manual_seed(0)
    prefixes = [[1] * 7, [2] * 3, [3] * 11]
    docs = [(i % 3, [4] * (1 + (5 * i) % 13)) for i in range(9)]
    batch = pack(prefixes, docs)
    rows = int(batch.cu_q[-1])
    q = torch.randn(rows, 4, 8, generator=gen)
    k = torch.randn(rows, 2, 8, generator=gen)
    v = torch.randn(rows, 2, 8, generator=gen)
    want = LOOP(q, k, v, batch, 8**-0.5)
    got = GROUPED(q, k, v, batch, 8**-0.5)
    assert torch.allclose(got, want, atol=1e-6)
    assert len(attention.plan_groups(batch, q.device, q.dtype)) == groups


def test_long_sequences_alone_run_causal_and_equal_the_loop() -> None:
    """A sequence alone in its group past CAUSAL_ELEMENTS runs with its queries taken at all
    of its key rows and a plain causal mask (none materialised): the loop's values, in every
    layer but the last (whose queries are only the documents' last rows: masked groups)."""
    gen = torch.Generator().manual_seed(0)
    batch = pack([[1] * 30, [2] * 5], [(0, [3] * 700), (1, [4] * 20), (1, [5] * 900)], head=[6] * 9)
    rows = int(batch.cu_q[-1])
    q = torch.randn(rows, 4, 8, generator=gen)
    k, v = torch.randn(2, rows, 2, 8, generator=gen)
    groups = attention.plan_groups(batch, q.device, q.dtype)
    assert sum(g.mask is None for g in groups) == 2  # the two long documents
    assert torch.allclose(
        GROUPED(q, k, v, batch, 8**-0.5), LOOP(q, k, v, batch, 8**-0.5), atol=1e-6
    )
    final = batch.final()
    assert all(g.mask is not None for g in attention.plan_groups(final, q.device, q.dtype))
    last = q[batch.last]
    assert torch.allclose(
        GROUPED(last, k, v, final, 8**-0.5), LOOP(last, k, v, final, 8**-0.5), atol=1e-6
    )


def test_fp8_matmul_tracks_the_bf16_product() -> None:
    device = "cuda" if CUDA else "cpu"  # torch 2.11's CPU build has no FP8 matmul
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(37, 64, generator=gen).to(device, torch.bfloat16)
    w = torch.randn(48, 64, generator=gen) * torch.linspace(0.01, 3, 48)[:, None]
    w = w.to(device, torch.bfloat16)
    quantized, scale = layers.quantize_fp8(w)
    assert quantized.dtype == torch.float8_e4m3fn
    assert scale.shape == (1, 48)
    # each row uses the format's range: its largest entry maps to the largest FP8 value
    assert torch.allclose(quantized.float().abs().amax(dim=1).cpu(), torch.full((48,), 448.0))
    want = x.float() @ w.float().t()
    got = layers.matmul(x, layers.Fp8Weight(quantized, scale)).float()
    assert got.dtype == torch.float32
    error = (got - want).norm() / want.norm()
    assert error < 0.05


def test_residual_adds_stay_out_of_addmm() -> None:
    """Compiled, the residual adds are plain adds after each matmul: inductor's ``addmm``
    would copy the residual before every matmul and round the sum differently from
    transformers (the pattern is matched on CPU as on CUDA)."""
    from torch._inductor.utils import run_and_get_code

    torch.manual_seed(0)
    rows, hidden, inter = 8, 64, 96

    def weight(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.bfloat16) / shape[-1] ** 0.5

    ones = torch.ones(hidden, dtype=torch.bfloat16)
    layer = layers.LayerWeights(
        input_norm=ones,
        qkv=weight(hidden, hidden),
        q_norm=ones,
        k_norm=ones,
        o=weight(hidden, hidden),
        post_norm=ones,
        gate_up=weight(2 * inter, hidden),
        down=weight(hidden, inter),
    )
    args = (
        torch.randn(rows, hidden, dtype=torch.bfloat16),
        torch.randn(rows, 2, hidden // 2, dtype=torch.bfloat16),
        layer,
        1e-6,
    )
    torch._dynamo.reset()
    out, code = run_and_get_code(torch.compile(layers.post_attention), *args)
    source = "\n".join(code)
    assert "mm(" in source
    assert "addmm" not in source
    torch.testing.assert_close(out, layers.post_attention(*args), rtol=0, atol=0.05)


def test_moved_pads_each_tensor_and_keeps_its_dtype() -> None:
    """The graphed path's inputs: zero rows appended up to the graph's sizes, one copy per
    dtype, int32 tile tables staying int32 for the kernel."""
    device = torch.device("cuda" if CUDA else "cpu")
    tokens = torch.tensor([5, 6, 7], dtype=torch.int64)
    tiles = torch.arange(16, dtype=torch.int32).reshape(2, 8)
    last = torch.tensor([2], dtype=torch.int64)
    got = moved((tokens, tiles, last), device, (8, 4, 2))
    assert [t.device.type for t in got] == [device.type] * 3
    assert [t.dtype for t in got] == [torch.int64, torch.int32, torch.int64]
    assert got[0].tolist() == [5, 6, 7, 0, 0, 0, 0, 0]
    assert got[1].tolist() == tiles.tolist() + [[0] * 8] * 2
    assert got[2].tolist() == [2, 0]
    assert [t.tolist() for t in moved((tokens, tiles), device)] == [
        tokens.tolist(),
        tiles.tolist(),
    ]
    with pytest.raises(ValueError, match="pad"):
        moved((tokens,), device, (2,))


def test_rope_tables_are_transformers_rotary_embedding_and_bound_positions() -> None:
    """The engine gathers cos/sin from tables made once; they are the model's own rotary
    embedding, and a batch reaching past them is refused instead of reading out of bounds."""
    from transformers import Qwen3Config, Qwen3Model

    from qwen3_rerank.random_model import SIZES

    config = Qwen3Config(vocab_size=64, **SIZES["tiny"])
    body = Qwen3Model(config).eval()
    hidden = config.hidden_size
    model = PackedQwen3(body, torch.zeros(hidden), 0.0, torch.device("cpu"), max_positions=40)
    x = torch.zeros(1, 40, hidden)
    cos, sin = body.rotary_emb(x, torch.arange(40)[None])
    assert torch.equal(model.rope[0], cos[0])
    assert torch.equal(model.rope[1], sin[0])
    model.score(pack([[1] * 4], [(0, [2] * 36)]))  # positions 0-39
    with pytest.raises(ValueError, match="max_positions"):
        model.score(pack([[1] * 4], [(0, [2] * 37)]))
