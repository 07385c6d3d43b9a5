"""What a torch engine can be asked for: :class:`TorchOptions`, checked when built.

Importing this module does not import torch: options can be built, checked and passed around
(the CLI, the server's settings) before the engine loads anything.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

from ...errors import ConfigurationError
from ...prompt import DEFAULT_MAX_LENGTH

__all__ = ["ATTENTION_BACKENDS", "TOKENIZE_MODES", "TorchOptions", "parse_bytes"]

ATTENTION_BACKENDS = ("auto", "prefix", "fa3", "flash", "grouped", "loop")
TOKENIZE_MODES = ("auto", "inline", "thread")
QUANTIZATIONS = (None, "fp8")
DEVICE_TYPES = ("cpu", "cuda", "mps")
DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}

_BYTE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_BYTE_UNITS |= {p: 2 ** (10 * (i + 1)) for i, u in enumerate("KMGT") for p in (u, u + "IB")}


def parse_bytes(value: int | str, name: str = "max_memory") -> int:
    """``"1.5GiB"``, ``"800MB"``, ``"2G"`` (G = GiB) or an int of bytes -> bytes."""
    match = None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif match is not None and match.group(2).upper() in _BYTE_UNITS:
        size = int(float(match.group(1)) * _BYTE_UNITS[match.group(2).upper()])
    else:
        raise ConfigurationError(f"{name} must be bytes or a size like '1.5GiB', got {value!r}")
    if size <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value!r}")
    return size


@dataclasses.dataclass(frozen=True)
class TorchOptions:
    """Settings of a :class:`~qwen3_rerank.engines.torch.TorchEngine`.

    Every ``None`` / ``"auto"`` lets the engine decide from the device, and it logs what it
    decided (logger ``qwen3_rerank.engines.torch``). Sizes are bytes or strings like
    ``"1.5GiB"``; they are stored as bytes.

    Example:
        >>> from qwen3_rerank.engines.torch import TorchOptions
        >>> TorchOptions(device="cpu", max_memory="1GiB").max_memory
        1073741824
    """

    device: Any = None
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``, or ``None``: CUDA
    when available, else CPU."""
    dtype: Any = None
    """``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch dtype; ``None``: bfloat16, except
    float32 on a CPU without bfloat16 instructions (AVX512-BF16 or AMX), where torch emulates
    bfloat16 slower than float32. Scores are always computed in fp32."""
    max_length: int = DEFAULT_MAX_LENGTH
    """Most tokens per pair, template included; longer documents are truncated."""
    max_batch_tokens: int | None = None
    """Tokens per forward pass; ``None``: sized from memory on GPU, 2048 on CPU."""
    max_memory: int | str | None = None
    """Cap on what the engine allocates on the device, weights included. Batches are sized to
    stay under it; the embedding table then stays in host memory and no CUDA graphs are kept."""
    activation_memory: int | str | None = None
    """On CUDA without ``max_memory``: room for activations beyond the weights (``None``:
    512 MiB, or the free memory if less). Batches are sized to fill it."""
    fast: bool = True
    """The packed prefix-sharing forward; ``False``: transformers' model on padded batches
    (the reference the fast path is tested against)."""
    compile: bool | None = None
    """``torch.compile`` the fast path; ``None``: on CUDA only."""
    cuda_graphs: bool | None = None
    """Replay batches as CUDA graphs; ``None``: on CUDA when compiling, with the prefix
    attention kernel and no ``max_memory`` (a graph's memory pool stays reserved)."""
    attention: str = "auto"
    """``"prefix"`` (our Triton kernel), ``"fa3"`` (vLLM's FlashAttention-3 build: Hopper,
    16-bit, vLLM installed), ``"flash"`` (PyTorch's FlashAttention varlen, CUDA, 16-bit),
    ``"grouped"`` (padded SDPA over groups of similar length), ``"loop"`` (SDPA per
    sequence), or ``"auto"``: grouped on CPU, else the first of prefix and flash that agrees
    with the loop on small batches at start-up, else the loop."""
    fused_mlp: bool | None = None
    """Run the MLP's gate/up projections and SiLU gate as one Triton kernel; ``None``: where it
    runs (CUDA, 16-bit, no FP8), the model is no wider than the 0.6B (wider, cuBLAS is faster)
    and it agrees with the unfused product at start-up."""
    tokenize: str = "auto"
    """``"inline"``: tokenize pieces of the requests between batch launches; ``"thread"``: on
    a helper thread while batches run; ``"auto"``: inline when batches replay CUDA graphs
    (launching then costs the CPU little), else the helper thread."""
    quantization: Literal["fp8"] | None = None
    """``"fp8"``: projections in FP8 (needs ``fast`` and bfloat16; GPUs of compute capability
    8.9+, or slowly on CPU)."""
    expandable_segments: bool = True
    """On CUDA, turn on the caching allocator's expandable segments (a process-wide setting:
    the allocator keeps less memory in blocks it cannot reuse). Skipped when
    ``PYTORCH_CUDA_ALLOC_CONF`` or ``PYTORCH_ALLOC_CONF`` is set; ``False`` leaves it alone."""
    revision: str | None = None
    """Passed to ``from_pretrained``: a branch, tag or commit of a Hub model."""
    cache_dir: str | None = None
    """Passed to ``from_pretrained``: where Hub downloads go."""
    local_files_only: bool = False
    """Passed to ``from_pretrained``: never download."""
    token: str | bool | None = None
    """Passed to ``from_pretrained``: a Hub token."""

    def __post_init__(self) -> None:
        _check_device(self.device)
        _check_dtype(self.dtype)
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int):
            raise ConfigurationError(f"max_length must be an integer, got {self.max_length!r}")
        if self.max_batch_tokens is not None and (
            isinstance(self.max_batch_tokens, bool)
            or not isinstance(self.max_batch_tokens, int)
            or self.max_batch_tokens < 1
        ):
            raise ConfigurationError(
                f"max_batch_tokens must be a positive integer, got {self.max_batch_tokens!r}"
            )
        for name in ("max_memory", "activation_memory"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_bytes(value, name))
        for name in ("fast", "expandable_segments", "local_files_only"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{name} must be True or False")
        for name in ("compile", "cuda_graphs", "fused_mlp"):
            if getattr(self, name) not in (None, True, False):
                raise ConfigurationError(f"{name} must be True, False or None")
        _one_of("attention", self.attention, ATTENTION_BACKENDS)
        _one_of("tokenize", self.tokenize, TOKENIZE_MODES)
        if self.quantization not in QUANTIZATIONS:
            raise ConfigurationError(
                f"unknown quantization {self.quantization!r}; use 'fp8' or None"
            )
        if self.quantization == "fp8" and not self.fast:
            raise ConfigurationError("quantization='fp8' needs fast=True and dtype='bfloat16'")
        if not self.fast and (self.attention != "auto" or self.cuda_graphs or self.fused_mlp):
            raise ConfigurationError(
                "attention, cuda_graphs and fused_mlp choose parts of the fast path: "
                "not with fast=False"
            )

    @property
    def memory_cap(self) -> int | None:
        """``max_memory`` in bytes."""
        return _as_bytes(self.max_memory)

    @property
    def activation_room(self) -> int | None:
        """``activation_memory`` in bytes."""
        return _as_bytes(self.activation_memory)

    def load_options(self) -> dict[str, Any]:
        """The keyword arguments for transformers' ``from_pretrained``."""
        options: dict[str, Any] = {"local_files_only": self.local_files_only}
        for name in ("revision", "cache_dir", "token"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        return options


def _as_bytes(value: int | str | None) -> int | None:
    return None if value is None else parse_bytes(value)


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigurationError(f"unknown {name} {value!r}; use one of {allowed}")


def _check_device(device: Any) -> None:
    """Checks what can be checked without torch; the engine checks the rest (is CUDA here?)."""
    if device is None or not isinstance(device, str):
        return  # a torch.device: checked when the engine resolves it
    kind, _, index = device.partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()):
        raise ConfigurationError(f"unknown device {device!r}; use one of {DEVICE_TYPES}")


def _check_dtype(dtype: Any) -> None:
    if dtype is None:
        return
    name = dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")
    if name.lower() not in DTYPE_NAMES:
        raise ConfigurationError(
            f"unsupported dtype {dtype!r}; use 'float32', 'bfloat16', 'float16' or a torch dtype"
        )
