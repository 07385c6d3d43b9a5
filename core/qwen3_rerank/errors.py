"""The package's exceptions: one root, a few typed branches.

Every error the package raises on purpose is a :class:`Qwen3RerankError`, so callers can catch
one type. Errors about the caller's own arguments are also ``ValueError`` and a missing extra
is also ``ImportError``, so generic handlers keep working::

    Qwen3RerankError
    ├── ConfigurationError (ValueError)      bad settings: engine, device, dtype, max_length, ...
    │   └── ModelLoadError                   model missing, incomplete, or not a Qwen3 reranker
    ├── InvalidInputError (ValueError)       bad call arguments: query, documents, top_n, ...
    ├── MissingDependencyError (ImportError) an optional extra is not installed
    └── EngineError                          the engine failed while scoring
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "EngineError",
    "InvalidInputError",
    "MissingDependencyError",
    "ModelLoadError",
    "Qwen3RerankError",
]


class Qwen3RerankError(Exception):
    """Root of every exception raised by qwen3-rerank."""


class ConfigurationError(Qwen3RerankError, ValueError):
    """A setting is invalid: unknown engine or device, bad dtype, max_length too small."""


class ModelLoadError(ConfigurationError):
    """The model cannot be loaded, or is not a Qwen3 reranker (no single-token yes/no)."""


class InvalidInputError(Qwen3RerankError, ValueError):
    """A call's arguments are invalid: empty query, non-string document, top_n <= 0, ..."""


class MissingDependencyError(Qwen3RerankError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'qwen3-rerank[{extra}]'"
        )
        self.package = package
        self.extra = extra


class EngineError(Qwen3RerankError):
    """The engine failed while scoring (out of memory with no smaller batch left, ...)."""
