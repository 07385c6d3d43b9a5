"""TorchOptions: checked without torch, the engine's public knobs, and its logged decisions."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3_rerank import ConfigurationError, Reranker
from qwen3_rerank.engines.torch import TorchOptions
from tests.core.engine_contract import DOCUMENTS, QUERY


def test_options_import_without_torch() -> None:
    code = (
        "import sys\n"
        "from qwen3_rerank.engines.torch import TorchOptions\n"
        "options = TorchOptions(device='cuda:1', max_memory='1.5GiB', attention='flash')\n"
        "print(options.memory_cap, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(int(1.5 * 2**30)), "False"]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:x"}, "device"),
        ({"dtype": "int8"}, "dtype"),
        ({"max_length": "long"}, "max_length"),
        ({"max_batch_tokens": -3}, "max_batch_tokens"),
        ({"max_memory": "lots"}, "max_memory"),
        ({"activation_memory": 0}, "activation_memory"),
        ({"attention": "paged"}, "attention"),
        ({"tokenize": "later"}, "tokenize"),
        ({"compile": "yes"}, "compile"),
        ({"fast": None}, "fast"),
        ({"quantization": "int4"}, "quantization"),
        ({"quantization": "fp8", "fast": False}, "fast=True"),
        ({"fast": False, "attention": "loop"}, "fast=False"),
    ],
)
def test_bad_options_are_configuration_errors(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        TorchOptions(**fields)  # type: ignore[arg-type]


def test_options_are_frozen_and_sizes_become_bytes() -> None:
    options = TorchOptions(max_memory="800MB", activation_memory=2**20)
    assert (options.max_memory, options.activation_room) == (800 * 10**6, 2**20)
    with pytest.raises(AttributeError):
        options.device = "cpu"  # type: ignore[misc]


def test_unknown_option_names_the_torch_engine(tiny_model: Path) -> None:
    from qwen3_rerank.engines.torch import TorchEngine

    with pytest.raises(ConfigurationError, match="the torch engine does not take gpu_layers"):
        TorchEngine(tiny_model, gpu_layers=3)


def test_options_object_and_keywords_over_it(tiny_model: Path) -> None:
    from qwen3_rerank.engines.torch import TorchEngine

    options = TorchOptions(device="cpu", max_batch_tokens=500, tokenize="inline")
    engine = TorchEngine(tiny_model, options, max_batch_tokens=700)
    with Reranker(engine=engine) as rr:
        assert engine.options.tokenize == "inline"
        assert engine.tokenize == "inline"
        assert engine.max_batch_tokens == 700
        assert len(rr.score(QUERY, DOCUMENTS)) == len(DOCUMENTS)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"attention": "flash"}, "attention='flash' cannot run here: needs CUDA"),
        ({"attention": "fa3"}, "attention='fa3' cannot run here: needs CUDA"),
        ({"fused_mlp": True}, "fused_mlp=True cannot run here"),
        ({"cuda_graphs": True}, "cuda_graphs=True needs device='cuda'"),
    ],
)
def test_asking_for_what_the_cpu_cannot_do(
    tiny_model: Path, fields: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Reranker(tiny_model, device="cpu", **fields)  # type: ignore[arg-type]


def test_the_prefix_kernel_refuses_bf16_in_tritons_interpreter(tiny_model: Path) -> None:
    """On CPU the prefix kernel runs only in Triton's interpreter, whose bfloat16 products are
    wrong: asked for in bf16 it is refused, not run into wrong scores."""
    assert os.environ.get("TRITON_INTERPRET") == "1"  # the test session's (conftest)
    with pytest.raises(ConfigurationError, match="interpreter computes bfloat16 products wrongly"):
        Reranker(tiny_model, device="cpu", dtype="bfloat16", attention="prefix")


def test_knobs_choose_the_strategy_and_keep_the_scores(
    tiny_model: Path, reranker: Reranker
) -> None:
    """The loop attention, no fused MLP and inline tokenizing: another strategy, the same
    scores."""
    with Reranker(
        tiny_model,
        device="cpu",
        dtype="float32",
        attention="loop",
        fused_mlp=False,
        tokenize="inline",
    ) as rr:
        engine = rr.engine
        assert (engine.attention, engine.fused_mlp, engine.tokenize) == ("loop", False, "inline")  # type: ignore[attr-defined]
        assert not engine.cuda_graphs  # type: ignore[attr-defined]
        got = rr.score(QUERY, DOCUMENTS)
    assert got == pytest.approx(reranker.score(QUERY, DOCUMENTS), abs=1e-5)


def test_decisions_are_logged(tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="qwen3_rerank.engines.torch"):
        Reranker(tiny_model, device="cpu", max_memory="256MiB").close()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("attention: grouped") for m in messages)
    assert any(m.startswith("MLP gate: unfused") for m in messages)
    assert any(m.startswith("compile: off; CUDA graphs: off") for m in messages)
    assert any("max_memory 0.25 GiB" in m and "tokens per batch" in m for m in messages)
    assert any(m.startswith("tokenizing: helper thread") for m in messages)
