"""Which engines exist, and how to build one by name.

An entry names the engine class and its options dataclass as ``"module:attribute"`` strings, so
that listing engines imports nothing heavy, and the engine's module (torch, vLLM, httpx) is
imported only when that engine is built. An engine with an options class is built as
``Engine(model, options=Options(**keywords))`` after the keywords are checked; adding an engine
is one :func:`register` call.

``"auto"`` is the torch engine: on the benchmarks' three workloads it scores 1.2-1.9x faster
than vLLM at its best, in a small fraction of the GPU memory (docs/engines.md has the numbers),
and it runs on CPU too. vLLM is used when asked for by name, or given an existing ``vllm.LLM``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from .base import Engine
from .options import options_from

__all__ = ["AUTO", "create", "names", "options_class", "register", "resolve"]

AUTO = "torch"
"""The engine ``"auto"`` stands for."""


@dataclass(frozen=True)
class _Entry:
    engine: str | Callable[..., Engine]
    options: str | type


_ENGINES: dict[str, _Entry] = {}


def register(name: str, engine: str | Callable[..., Engine], options: str | type) -> None:
    """Makes ``create(name, ...)`` (and ``Reranker(model, engine=name)``) build this engine.

    Args:
        name: The engine's name (not ``"auto"``).
        engine: The engine class, or ``"module:Class"`` to import it only when built. It is
            built as ``engine(model, options=options_class(**keywords))``.
        options: Its frozen options dataclass, or ``"module:Class"``.
    """
    if name == "auto":
        raise ConfigurationError("'auto' is not a name an engine can be registered under")
    _ENGINES[name] = _Entry(engine, options)


def names() -> tuple[str, ...]:
    """The names ``create`` takes, ``"auto"`` first."""
    return ("auto", *_ENGINES)


def resolve(name: str) -> str:
    """The registered engine ``name`` stands for (``"auto"`` is :data:`AUTO`).

    Raises:
        ConfigurationError: An unknown name.
    """
    if not isinstance(name, str) or (name != "auto" and name not in _ENGINES):
        raise ConfigurationError(f"unknown engine {name!r}; choose one of {names()}")
    return AUTO if name == "auto" else name


def options_class(name: str) -> type:
    """The options dataclass of engine ``name``."""
    options = _ENGINES[resolve(name)].options
    return _load(options) if isinstance(options, str) else options


def create(name: str, model: str | None = None, **options: Any) -> Engine:
    """Builds engine ``name`` for ``model`` with ``options``, which are checked first.

    Raises:
        ConfigurationError: An unknown engine, or an option it does not take (the message
            names the engine) or a bad value.
    """
    name = resolve(name)
    entry = _ENGINES[name]
    typed: Any = options_from(name, options_class(name), options)
    engine_class = _load(entry.engine) if isinstance(entry.engine, str) else entry.engine
    return engine_class(model, options=typed)


def _load(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


register(
    "torch", "qwen3_rerank.engines.torch:TorchEngine", "qwen3_rerank.engines.torch:TorchOptions"
)
register("vllm", "qwen3_rerank.engines.vllm:VllmEngine", "qwen3_rerank.engines.vllm:VllmOptions")
register(
    "remote",
    "qwen3_rerank.engines.remote:RemoteEngine",
    "qwen3_rerank.engines.remote:RemoteOptions",
)
