"""Which MLP gate runs: the fused Triton kernel or the unfused product (:func:`select_gate`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from ...errors import ConfigurationError
from .kernels import scaffold
from .kernels.gated_mlp import fits, gated_mlp
from .layers import Weight, silu_gate

__all__ = ["FUSED_MAX_HIDDEN", "select_gate"]

logger = logging.getLogger("qwen3_rerank.engines.torch")

# The widest hidden size at which ``None`` picks the fused kernel (the 0.6B's). Its matmul runs
# below cuBLAS's rate, and what it saves (the SiLU gate's pass over the product) shrinks against
# the matmul as models widen: it won at the 0.6B's width, lost at the 4B's and the 8B's
# (docs/performance.md).
FUSED_MAX_HIDDEN = 1024


def select_gate(
    requested: bool | None, gate_up: Weight, device: torch.device, dtype: torch.dtype
) -> Callable[..., torch.Tensor]:
    """The fused gate/up + SiLU kernel (:mod:`.kernels.gated_mlp`) when asked for, or for
    ``None`` where it runs (CUDA, 16-bit, weights not in FP8), pays (hidden size at most
    :data:`FUSED_MAX_HIDDEN`) and agrees with the unfused MLP on a small batch; else
    :func:`.layers.silu_gate`. Logs the choice.

    Raises:
        ConfigurationError: The kernel was asked for and cannot run here.
    """
    if requested is False:
        logger.info("MLP gate: unfused, as asked")
        return silu_gate
    why_not = _unavailable(gate_up, device, dtype)
    if why_not is None and requested is None and isinstance(gate_up, torch.Tensor):
        hidden = gate_up.shape[1]
        if hidden > FUSED_MAX_HIDDEN:
            why_not = f"hidden size {hidden} > {FUSED_MAX_HIDDEN}, where cuBLAS's matmul is faster"
        else:
            why_not = _disagrees(gate_up, device, dtype)
    if why_not is None:
        logger.info("MLP gate: fused Triton kernel%s", ", as asked" if requested else "")
        return gated_mlp
    if requested:
        raise ConfigurationError(f"fused_mlp=True cannot run here: {why_not}")
    logger.info("MLP gate: unfused (fused kernel ruled out: %s)", why_not)
    return silu_gate


def _unavailable(gate_up: Weight, device: torch.device, dtype: torch.dtype) -> str | None:
    if not scaffold.available():
        return "Triton is not installed"
    if device.type != "cuda":
        return "needs CUDA"
    if dtype == torch.float32:
        return "needs float16 or bfloat16"
    if not isinstance(gate_up, torch.Tensor):
        return "the weights are in FP8"
    probe = torch.empty(1, gate_up.shape[1], device=device, dtype=dtype)
    return None if fits(probe, gate_up) else "the model's sizes are not whole tiles"


def _disagrees(gate_up: torch.Tensor, device: torch.device, dtype: torch.dtype) -> str | None:
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(37, gate_up.shape[1], generator=gen).to(device, dtype)
    want = silu_gate(x, gate_up).float()
    try:
        got = gated_mlp(x, gate_up).float()
    except Exception as exc:  # any failure to build or run the kernel rules it out, logged
        return f"its self-test raised {type(exc).__name__}: {exc}"
    close = bool((got - want).abs().max() <= 1e-2 * want.abs().max().clamp(min=1e-6))
    return None if got.shape == want.shape and close else "its self-test disagrees"
