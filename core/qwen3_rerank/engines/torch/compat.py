"""Every private PyTorch API the engine uses, in one place (a torch upgrade is checked here).

Each has no public equivalent in the torch versions the package supports (``torch>=2.5``).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import sys
import threading
from typing import Any

import torch

__all__ = [
    "flash_attention_varlen",
    "mark_dynamic",
    "mark_static_address",
    "own_cudagraph_trees",
    "reset_cudagraph_trees",
    "scaled_mm",
    "set_allocator_settings",
]


def mark_dynamic(tensor: torch.Tensor, dim: int) -> None:
    """Tells ``torch.compile`` that ``tensor``'s size ``dim`` varies between calls."""
    torch._dynamo.mark_dynamic(tensor, dim)


def mark_static_address(tensor: torch.Tensor) -> None:
    """Tells CUDA graphs that ``tensor`` stays where it is: read in place, never copied in."""
    torch._dynamo.mark_static_address(tensor)


def own_cudagraph_trees() -> None:
    """Lets the calling thread record and replay inductor's CUDA graphs. Some torch versions set
    up the per-thread state of their CUDA graph trees only in the thread that imported them
    (and in autograd's threads): compiled code run from any other thread fails an assertion."""
    imported_here = "torch._inductor.cudagraph_trees" not in sys.modules
    from torch._inductor import cudagraph_trees as trees

    names = ("tree_manager_containers", "tree_manager_locks")
    if imported_here:  # the import stashed its state in this thread's slot
        for name in names:
            _add_reference_the_slot_did_not_take(getattr(trees.local, name))
    if not torch._C._is_key_in_tls(names[0]):
        trees.local.tree_manager_containers = {}
        trees.local.tree_manager_locks = collections.defaultdict(threading.Lock)
        for name in names:
            obj = getattr(trees.local, name)
            torch._C._stash_obj_in_tls(name, obj)
            _add_reference_the_slot_did_not_take(obj)


def _add_reference_the_slot_did_not_take(obj: object) -> None:
    """Balances ``obj``'s stash in torch's native thread-local slot, which releases a reference
    when the thread ends, on torch versions whose slot took none."""
    if not _stash_takes_reference():
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


@functools.cache
def _stash_takes_reference() -> bool:
    """Whether torch's native thread-local slot takes a reference to what is put there. It
    releases one when the thread ends; some torch versions (2.11) take none, and one must be
    added for them, or ending the thread frees objects still in use."""
    probe = [None]
    before = sys.getrefcount(probe)
    torch._C._stash_obj_in_tls("qwen3_rerank.stash_probe", probe)
    taken = sys.getrefcount(probe) > before
    if not taken:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(probe))
    return taken


def reset_cudagraph_trees() -> None:
    """Starts inductor's CUDA graph trees afresh (after an out-of-memory while recording, their
    state is broken and every later recording in the process fails an assertion)."""
    from torch._inductor.cudagraph_trees import reset_cudagraph_trees as reset

    reset()


def scaled_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """The FP8 matmul ``(a * scale_a) @ (b * scale_b)``, rounded to ``out_dtype``."""
    out: torch.Tensor = torch._scaled_mm(
        a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype
    )
    return out


def flash_attention_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: tuple[Any, ...], scale: float
) -> torch.Tensor:
    """FlashAttention-2 varlen forward shipped in PyTorch (CUDA, 16-bit), causal masks aligned
    bottom-right; ``lengths`` is ``(cu_q, cu_k, max_q, max_k)``."""
    cu_q, cu_k, max_q, max_k = lengths
    out = torch.ops.aten._flash_attention_forward(
        q, k, v, cu_q, cu_k, max_q, max_k, 0.0, True, False, scale=scale
    )
    result: torch.Tensor = out[0]
    return result


def set_allocator_settings(settings: str) -> bool:
    """Configures the CUDA caching allocator of this process; whether it could."""
    setter = getattr(torch._C, "_accelerator_setAllocatorSettings", None)  # torch >= 2.9
    if setter is None:
        setter = getattr(torch.cuda.memory, "_set_allocator_settings", None)
    if setter is None:
        return False
    with contextlib.suppress(RuntimeError):  # a platform without it
        setter(settings)
        return True
    return False
