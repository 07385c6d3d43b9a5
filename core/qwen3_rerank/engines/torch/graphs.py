"""How the fast path is compiled, and the fixed shapes its CUDA graphs are recorded for.

``torch.compile`` marks only the batch-dependent sizes dynamic (dim 0 of the tensors among the
first arguments: token, key, tile and sequence counts), so that batches of any size reuse the
graph while head and hidden sizes stay constants (fully dynamic shapes made inductor emit
looped reductions, several times slower). Integer arguments (max_q, max_k) become dynamic after
their first change: one recompile. ``mode="reduce-overhead"`` replays CUDA graphs: one per
distinct set of sizes, run once as it is, recorded the second time it is seen, replayed from
then on. Batches are padded to a few sizes per power of two so that there are few graphs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .compat import mark_dynamic

__all__ = ["ROW_SIZES", "bucket", "compile_for_tokens", "graph_rows"]

ROW_SIZES = 8  # rows set the cost of every matmul: padded to eight sizes per power of two
OTHER_SIZES = 4  # tiles and documents cost little: four sizes


def compile_for_tokens(
    fn: Callable[..., Any], token_args: int, mode: str | None = None
) -> Callable[..., Any]:
    """``torch.compile(fn)`` with dim 0 of the tensors in its first ``token_args`` arguments
    (or in tuples there, nested too) marked dynamic on every call."""
    compiled = torch.compile(fn, dynamic=None, mode=mode)

    def mark(arg: Any) -> None:
        if isinstance(arg, torch.Tensor):
            mark_dynamic(arg, 0)
        elif isinstance(arg, tuple):
            for item in arg:
                mark(item)

    def run(*args: Any) -> Any:
        for arg in args[:token_args]:
            mark(arg)
        return compiled(*args)

    return run


def _step(n: int, per_octave: int) -> int:
    return 1 << max(0, n.bit_length() - per_octave.bit_length())


def bucket(n: int, per_octave: int = OTHER_SIZES) -> int:
    """``n`` rounded up to one of ``per_octave`` sizes per power of two (a power of two
    itself), at least 8."""
    step = _step(n, per_octave)
    return max(8, -(-n // step) * step)


def graph_rows(n: int) -> int:
    """The largest padded row count that is at most ``n``: batches planned with this token
    budget fill their CUDA graphs with little padding."""
    step = _step(n, ROW_SIZES)
    return max(8, n // step * step)
