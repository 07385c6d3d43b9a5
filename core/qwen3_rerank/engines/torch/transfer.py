"""How a packed batch's host tensors reach the device: pinned, one copy per dtype."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from .layout import PackedBatch

__all__ = ["moved", "on_device"]


def moved(
    parts: Sequence[torch.Tensor], device: torch.device, rows: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """Host tensors on ``device``, each padded with zero rows up to ``rows`` (default: as they
    are), in one copy per dtype from pinned memory.

    Pageable copies may wait for the GPU's queued work; one small copy per tensor, and padding
    or casting them on the GPU, cost a launch each (CUDA graphs need their inputs padded to
    fixed sizes). numpy fills the pinned buffer on this thread: ``torch.cat`` then
    ``pin_memory()`` copied with PyTorch's CPU thread pool, which at times stalled for
    milliseconds (docs/how-it-works.md)."""
    rows = [p.shape[0] for p in parts] if rows is None else rows
    if any(n < p.shape[0] for n, p in zip(rows, parts, strict=True)):
        raise ValueError(f"cannot pad {[p.shape[0] for p in parts]} rows down to {rows}")
    out: list[torch.Tensor] = list(parts)
    for dtype in dict.fromkeys(p.dtype for p in parts):
        chosen = [i for i, p in enumerate(parts) if p.dtype == dtype]
        shapes = [(rows[i], *parts[i].shape[1:]) for i in chosen]
        sizes = [math.prod(shape) for shape in shapes]
        host = torch.empty(sum(sizes), dtype=dtype, pin_memory=device.type == "cuda")
        filled, start = host.numpy(), 0
        for i, size in zip(chosen, sizes, strict=True):
            n = parts[i].numel()
            filled[start : start + n] = parts[i].numpy().ravel()
            filled[start + n : start + size] = 0
            start += size
        flat, start = host.to(device, non_blocking=True), 0
        for i, size, shape in zip(chosen, sizes, shapes, strict=True):
            out[i] = flat[start : start + size].view(shape)
            start += size
    return out


def on_device(batch: PackedBatch, device: torch.device) -> PackedBatch:
    """The batch on ``device`` (the batch itself on the CPU), copied by :func:`moved`."""
    if device.type == "cpu":
        return batch
    tokens, positions, key_index, cu_q, cu_k, last, tiles, final_tiles = moved(
        (
            batch.tokens,
            batch.positions,
            batch.key_index,
            batch.cu_q,
            batch.cu_k,
            batch.last,
            batch.tiles,
            batch.final_tiles,
        ),
        device,
    )
    return dataclasses.replace(
        batch,
        tokens=tokens,
        positions=positions,
        key_index=key_index,
        cu_q=cu_q,
        cu_k=cu_k,
        last=last,
        tiles=tiles,
        final_tiles=final_tiles,
        plans={},
    )
