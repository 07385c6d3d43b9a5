"""How much device memory the engine uses: tokens per batch, and the allocator's settings.

On CPU (and MPS) without a cap, batches hold a fixed number of tokens. On CUDA, batches are
sized so that their activations fit the room left beyond the weights: under ``max_memory``
all of it, else a modest default share of the free memory (a bigger share scored no faster,
and the whole GPU then stays small: docs/how-it-works.md).
"""

from __future__ import annotations

import logging
import os

import torch

from ...errors import ConfigurationError
from .compat import set_allocator_settings

__all__ = ["DEFAULT_ACTIVATION_MEMORY", "configure_allocator", "token_budget"]

logger = logging.getLogger("qwen3_rerank.engines.torch")

DEFAULT_BATCH_TOKENS = {"cpu": 2048, "mps": 16384}  # tokens per batch without a memory cap
DEFAULT_ACTIVATION_MEMORY = 512 * 2**20  # on CUDA without max_memory
SLACK_BYTES = 48 * 2**20  # kept free under a cap for the allocator's rounding, small buffers


def token_budget(
    device: torch.device,
    per_token: int,
    *,
    weight_bytes: int,
    max_length: int,
    memory_cap: int | None,
    activation_memory: int | None,
) -> int:
    """Tokens per forward pass that fit ``memory_cap`` (weights included), or on CUDA without
    one the activation room, at ``per_token`` transient bytes per token. Logged.

    Raises:
        ConfigurationError: The cap leaves room for fewer than ``max_length`` tokens.
    """
    if memory_cap is None and device.type != "cuda":
        budget = DEFAULT_BATCH_TOKENS[device.type]
        logger.info("token budget: %d tokens per batch (%s default)", budget, device.type)
        return budget
    if device.type == "cuda":
        used = torch.cuda.memory_allocated(device)
        free, _ = torch.cuda.mem_get_info(device)
    else:
        used, free = weight_bytes, memory_cap or 0
    if memory_cap is not None:
        room = memory_cap - used
    else:
        room = min(free, activation_memory or DEFAULT_ACTIVATION_MEMORY)
    budget = int(room - SLACK_BYTES) // per_token
    if memory_cap is not None and budget < max_length:
        raise ConfigurationError(
            f"max_memory={memory_cap / 2**30:.2f}GiB leaves room for {max(budget, 0)} tokens "
            f"per batch after {used / 2**30:.2f}GiB of weights, fewer than "
            f"max_length={max_length}: raise max_memory or lower max_length"
        )
    budget = max(budget, max_length)
    cap = f"max_memory {memory_cap / 2**30:.2f} GiB" if memory_cap else "no memory cap"
    logger.info(
        "token budget: %d tokens per batch (%s; %.0f MiB for activations at %d bytes a token)",
        budget,
        cap,
        room / 2**20,
        per_token,
    )
    return budget


def configure_allocator() -> None:
    """Lets the CUDA caching allocator grow segments in place (expandable segments), unless
    the user configured the allocator through its environment variables.

    This is process-wide: it changes the allocator for all of the process's CUDA work. It is
    done because batches of every size otherwise leave the allocator holding freed blocks it
    cannot reuse. ``TorchOptions(expandable_segments=False)`` skips it.
    """
    if os.environ.get("PYTORCH_CUDA_ALLOC_CONF") or os.environ.get("PYTORCH_ALLOC_CONF"):
        logger.info("CUDA allocator: left as the environment configures it")
        return
    if set_allocator_settings("expandable_segments:True"):
        logger.info("CUDA allocator: expandable segments on (process-wide)")
