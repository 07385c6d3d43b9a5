"""What every Triton kernel here shares: the import guard and the op registration.

Triton ships with CUDA builds of PyTorch; without it the kernels are simply not available and
the engine keeps PyTorch's own paths. Each kernel is registered as an opaque custom op, so that
``torch.compile`` calls it from its graph as it is. (As a ``torch.library.triton_op``, inductor
recompiles the kernel's source itself, and Triton 3.6 failed an assertion on it.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["available", "register", "tl", "triton"]

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None
    tl = None


def available() -> bool:
    """Whether Triton kernels can be launched here (Triton importable)."""
    return triton is not None


def register(
    name: str, launch: Callable[..., torch.Tensor], fake: Callable[..., torch.Tensor]
) -> None:
    """Registers ``launch`` as ``torch.ops.qwen3_rerank.<name>``, with ``fake`` giving its
    output's shape and dtype to ``torch.compile``. Nothing happens without Triton."""
    if triton is None:
        return
    op: Any = torch.library.custom_op(f"qwen3_rerank::{name}", mutates_args=())(launch)
    op.register_fake(fake)
