"""The engine registry and typed options: names, ``auto``, and options an engine does not take."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank import ConfigurationError, Reranker, engines
from qwen3_rerank.engines import Engine, Progress, ScoredDocuments, ScoreRequest
from qwen3_rerank.engines.remote import RemoteEngine, RemoteOptions
from qwen3_rerank.engines.torch import TorchEngine
from qwen3_rerank.engines.vllm import VllmOptions
from tests.core.test_cli import run_cli


def test_names_and_auto_is_torch(tiny_model: Path) -> None:
    assert engines.names() == ("auto", "torch", "vllm", "remote")
    assert engines.resolve("auto") == engines.AUTO == "torch"
    with Reranker(tiny_model) as rr:
        assert isinstance(rr.engine, TorchEngine)
    with pytest.raises(ConfigurationError, match="unknown engine 'onnx'"):
        Reranker(tiny_model, engine="onnx")


def test_options_classes_are_frozen_and_checked() -> None:
    assert engines.options_class("vllm") is VllmOptions
    assert engines.options_class("remote") is RemoteOptions
    options = RemoteOptions("http://127.0.0.1:1", api="cohere")
    with pytest.raises(AttributeError):
        options.api = "tei"  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="max_retries"):
        RemoteOptions("http://127.0.0.1:1", max_retries=-1)


WRONG_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("vllm", {"max_batch_tokens": 4096}, "max_batch_tokens"),
    ("vllm", {"device": "cpu"}, "device"),
    ("vllm", {"max_memory": "1GiB", "fast": False}, "fast, max_memory"),
    ("torch", {"kv_cache_memory_bytes": 2**30}, "kv_cache_memory_bytes"),
    ("torch", {"base_url": "http://127.0.0.1:1"}, "base_url"),
    ("torch", {"gpu_memory_utilization": 0.5}, "gpu_memory_utilization"),
    ("auto", {"enforce_eager": True}, "enforce_eager"),
    ("remote", {"base_url": "http://127.0.0.1:1", "device": "cpu"}, "device"),
    ("remote", {"base_url": "http://127.0.0.1:1", "max_length": 512}, "max_length"),
]


@pytest.mark.parametrize(("engine", "options", "names"), WRONG_OPTIONS)
def test_an_option_the_engine_does_not_take_names_the_engine(
    tiny_model: Path, engine: str, options: dict[str, Any], names: str
) -> None:
    expected = engines.resolve(engine)
    with pytest.raises(ConfigurationError, match=f"the {expected} engine does not take {names};"):
        Reranker(tiny_model, engine=engine, **options)


def test_an_llm_is_for_vllm_only(tiny_model: Path) -> None:
    with pytest.raises(ConfigurationError, match="the torch engine does not take llm"):
        Reranker(tiny_model, engine="torch", llm=object())


def test_cli_refuses_a_torch_option_for_vllm(tiny_model: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text("a panda\nParis\n")
    out = run_cli(
        "rerank", "-m", str(tiny_model), "-q", "panda", "--engine", "vllm",
        "--max-batch-tokens", "4096", str(docs),
    )  # fmt: skip
    assert out.returncode == 2
    assert "the vllm engine does not take max_batch_tokens" in out.stderr


def test_an_engine_object_takes_no_options(tiny_model: Path) -> None:
    with (
        Reranker(tiny_model, device="cpu") as rr,
        pytest.raises(ConfigurationError, match="neither"),
    ):
        Reranker(engine=rr.engine, device="cpu")


def test_remote_is_an_engine_like_the_others() -> None:
    with Reranker("m", engine="remote", base_url="http://127.0.0.1:1", api="cohere") as rr:
        assert isinstance(rr.engine, RemoteEngine)
        assert rr.model == "m"
        assert rr.engine.options == RemoteOptions("http://127.0.0.1:1", api="cohere")
    with Reranker.remote("http://127.0.0.1:1", "m", api="tei") as rr:
        assert rr.model == "m"
    with pytest.raises(ConfigurationError, match="base_url"):
        Reranker("m", engine="remote")


@dataclass(frozen=True)
class LengthOptions:
    per_character: float = 0.01


class LengthEngine:
    """A complete engine in a few lines: scores a document by its length."""

    def __init__(self, model: str | None, options: LengthOptions) -> None:
        self.model, self.options = model, options

    def score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None = None
    ) -> list[ScoredDocuments]:
        return [
            ScoredDocuments(
                [min(1.0, len(d) * self.options.per_character) for d in r.documents],
                [False] * len(r.documents),
            )
            for r in requests
        ]

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoredDocuments]:
        return self.score(requests)

    def close(self) -> None:
        pass


def test_a_new_engine_is_one_register_call() -> None:
    engines.register("by-length", LengthEngine, LengthOptions)
    assert "by-length" in engines.names()
    with Reranker("any", engine="by-length", per_character=0.1) as rr:
        assert isinstance(rr.engine, Engine)
        assert rr.score("q", ["abc", "a"]) == pytest.approx([0.3, 0.1])
        assert [r.index for r in rr.rerank("q", ["a", "abcd", "ab"])] == [1, 2, 0]
    with pytest.raises(ConfigurationError, match="the by-length engine does not take device"):
        Reranker("any", engine="by-length", device="cpu")
    with pytest.raises(ConfigurationError, match="auto"):
        engines.register("auto", LengthEngine, LengthOptions)
