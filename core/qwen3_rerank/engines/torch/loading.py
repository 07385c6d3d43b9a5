"""Where the engine runs and what it loads: device, dtype, tokenizer, decoder and yes/no head.

The score of a pair is ``sigmoid(h·(w_yes - w_no) + b_yes - b_no)`` with ``h`` the final hidden
state of its last token: ``softmax([logit_no, logit_yes])[1]`` of the model-card recipe, without
ever computing the 151669-row vocabulary. So only the decoder body and that one direction are
kept from the causal LM.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from ...errors import ConfigurationError, ModelLoadError
from ...hub import resolve_model
from ..checkpoint import local_folder
from .options import DEVICE_TYPES, DTYPE_NAMES, TorchOptions

__all__ = [
    "Checkpoint",
    "check_quantization",
    "cpu_computes_bf16",
    "load",
    "resolve_device",
    "resolve_dtype",
]


@dataclasses.dataclass
class Checkpoint:
    """What the engine keeps of a Qwen3-Reranker checkpoint."""

    tokenizer: Any
    body: Any  # transformers' Qwen3Model, on the host
    direction: torch.Tensor  # fp32 w_yes - w_no of the LM head, on the device
    offset: float  # b_yes - b_no (0 for Qwen3)
    yes_id: int
    no_id: int
    pad_id: int  # any id works for padding (it is masked out)


def resolve_device(device: Any) -> torch.device:
    """``None`` -> CUDA if available else CPU; a string or ``torch.device`` is checked."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"unknown device {device!r}; use one of {DEVICE_TYPES}") from exc
    if dev.type not in DEVICE_TYPES:
        raise ConfigurationError(f"unsupported device {device!r}; use one of {DEVICE_TYPES}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} asked for, but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigurationError(
            f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigurationError(f"device {device!r} asked for, but MPS is not available")
    return dev


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bfloat16 matmul instructions (AVX512-BF16 or AMX): with them bfloat16
    runs about twice as fast as float32; without them torch emulates it, slower than float32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's, x86 only
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    """``None`` -> bfloat16, except float32 on a CPU without bfloat16 instructions; names or
    ``torch.dtype`` are checked."""
    if dtype is None:
        dtype = "float32" if device.type == "cpu" and not cpu_computes_bf16() else "bfloat16"
    if isinstance(dtype, str) and dtype.lower() in DTYPE_NAMES:
        dtype = getattr(torch, DTYPE_NAMES[dtype.lower()])
    if dtype in (torch.float32, torch.bfloat16, torch.float16):
        chosen: torch.dtype = dtype
        return chosen
    raise ConfigurationError(
        f"unsupported dtype {dtype!r}; use 'float32', 'bfloat16', 'float16' or a torch dtype"
    )


def check_quantization(options: TorchOptions, dtype: torch.dtype, device: torch.device) -> None:
    """FP8 needs bfloat16 and, on CUDA, a GPU with FP8 units."""
    if options.quantization is None:
        return
    if dtype != torch.bfloat16:
        raise ConfigurationError("quantization='fp8' needs fast=True and dtype='bfloat16'")
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        raise ConfigurationError(
            f"quantization='fp8' needs a GPU with FP8 units (compute capability 8.9+); "
            f"{torch.cuda.get_device_name(device)} has none"
        )


def load(
    model: str | os.PathLike[str], options: TorchOptions, dtype: torch.dtype, device: torch.device
) -> Checkpoint:
    """Loads the tokenizer (refusing one without Qwen3's yes/no tokens before any weights),
    then the causal LM, keeping its decoder body and the yes/no direction of its head."""
    name = os.fspath(model)
    folder = local_folder(name)
    # a Hub id resolves to its cached snapshot here, failing fast and in one line when unreachable
    source = (
        os.fspath(folder) if folder is not None else resolve_model(name, options.load_options())
    )
    tokenizer = _load_tokenizer(name, source, options.load_options())
    yes_id, no_id = _yes_no_ids(tokenizer, name)
    causal_lm = _load_causal_lm(name, source, dtype, options.load_options())
    head = causal_lm.get_output_embeddings()
    if head is None or head.weight.shape[0] <= max(yes_id, no_id):
        raise ModelLoadError(f"{name!r} has no LM head covering the yes/no tokens")
    with torch.no_grad():
        weight = head.weight.float()
        direction = (weight[yes_id] - weight[no_id]).to(device)
        bias = getattr(head, "bias", None)
        offset = float(bias[yes_id] - bias[no_id]) if bias is not None else 0.0
    return Checkpoint(
        tokenizer=tokenizer,
        body=causal_lm.base_model.eval(),
        direction=direction,
        offset=offset,
        yes_id=yes_id,
        no_id=no_id,
        pad_id=_pad_id(tokenizer),
    )


def _load_tokenizer(name: str, source: str, options: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, **options)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {name!r}: {_one_line(exc)}") from exc


def _load_causal_lm(name: str, source: str, dtype: torch.dtype, options: dict[str, Any]) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, attn_implementation="sdpa", **options
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot load a causal LM from {name!r}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """transformers' errors span many lines; a CLI error must fit on one."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _yes_no_ids(tokenizer: Any, name: str) -> tuple[int, int]:
    """The ids of ``yes`` and ``no``, which must each be one token, as in Qwen3's vocabulary."""
    ids = []
    for token in ("yes", "no", "<|im_start|>", "<|im_end|>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(tid, int) or tid == tokenizer.unk_token_id:
            raise ModelLoadError(
                f"{name!r} is not a Qwen3 reranker: its tokenizer has no single token {token!r}"
            )
        ids.append(tid)
    return ids[0], ids[1]


def _pad_id(tokenizer: Any) -> int:
    """Qwen's padding id is <|endoftext|>; any id works (it is masked out)."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(tid, int):
            return tid
    return 0
