"""The vLLM engine without vLLM: option mapping and errors, checked before vLLM is imported.

vLLM itself runs in tests/vllm (its CPU build) and tests/gpu (on the H100).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank import ConfigurationError, MissingDependencyError, Reranker
from qwen3_rerank.engines.torch import TorchEngine
from qwen3_rerank.engines.vllm import (
    DEFAULT_KV_CACHE_BYTES,
    QWEN3_RERANKER_OVERRIDES,
    VllmOptions,
    llm_options,
)

ORIGINAL = {"architectures": ["Qwen3ForCausalLM"]}
CONVERTED = {"architectures": ["Qwen3ForSequenceClassification"], "num_labels": 1}


def test_original_checkpoint_gets_the_official_overrides_and_frugal_defaults() -> None:
    options = llm_options("Qwen/Qwen3-Reranker-0.6B", ORIGINAL, VllmOptions())
    assert options == {
        "model": "Qwen/Qwen3-Reranker-0.6B",
        "runner": "pooling",
        "max_model_len": 8192,
        "hf_overrides": QWEN3_RERANKER_OVERRIDES,
        "kv_cache_memory_bytes": DEFAULT_KV_CACHE_BYTES,
    }


def test_converted_seq_cls_checkpoint_gets_no_overrides() -> None:
    options = llm_options("tomaarsen/Qwen3-Reranker-0.6B-seq-cls", CONVERTED, VllmOptions())
    assert "hf_overrides" not in options


def test_knobs_pass_through_and_none_is_dropped() -> None:
    chosen = VllmOptions(
        max_length=4096,
        gpu_memory_utilization=0.3,
        enforce_eager=True,
        enable_prefix_caching=None,
        max_num_seqs=64,
        dtype="bfloat16",
        quantization="fp8",
        tensor_parallel_size=2,
        seed=7,
        llm_args={"swap_space": 1},
    )
    options = llm_options("m", ORIGINAL, chosen)
    assert options["gpu_memory_utilization"] == 0.3
    assert "kv_cache_memory_bytes" not in options
    assert "enable_prefix_caching" not in options
    assert options["max_model_len"] == 4096
    assert (options["enforce_eager"], options["max_num_seqs"], options["seed"]) == (True, 64, 7)
    assert (options["quantization"], options["tensor_parallel_size"]) == ("fp8", 2)
    assert options["swap_space"] == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gpu_memory_utilization": 0.5, "kv_cache_memory_bytes": 2**30}, "not both"),
        ({"max_model_len": 1024}, "shorter than max_length"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"max_num_seqs": 0}, "max_num_seqs"),
        ({"dtype": "int3"}, "dtype"),
        ({"llm_args": {"max_model_len": 4}}, "option of its own"),
    ],
)
def test_conflicting_or_bad_knobs(tiny_model: Path, kwargs: dict[str, Any], match: str) -> None:
    """Refused before vLLM is imported, so also where it is not installed."""
    with pytest.raises(ConfigurationError, match=match):
        Reranker(tiny_model, engine="vllm", **kwargs)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_missing_vllm_names_the_extra(tiny_model: Path) -> None:
    with pytest.raises(MissingDependencyError, match=r"qwen3-rerank\[vllm\]"):
        Reranker(tiny_model, engine="vllm")


def test_auto_is_the_torch_engine(tiny_model: Path) -> None:
    with Reranker(tiny_model, device="cpu") as rr:
        assert isinstance(rr.engine, TorchEngine)
