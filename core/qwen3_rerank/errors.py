"""The package's exceptions: one root, a few typed branches.

Every error the package raises on purpose is a :class:`Qwen3RerankError`, so callers can catch
one type. Errors about the caller's own arguments are also ``ValueError`` and a missing extra
is also ``ImportError``, so generic handlers keep working::

    Qwen3RerankError
    ├── ConfigurationError (ValueError)      bad settings: engine, device, dtype, max_length, ...
    │   └── ModelLoadError                   model missing, incomplete, or not a Qwen3 reranker
    ├── InvalidInputError (ValueError)       bad call arguments: query, documents, top_n, ...
    ├── MissingDependencyError (ImportError) an optional extra is not installed
    ├── EngineError                          the engine failed while scoring
    └── RemoteError                          a rerank server failed (``retryable`` says if
        │                                    trying again may help)
        ├── RemoteConnectionError            could not connect, or the connection dropped
        ├── RemoteTimeoutError               no answer within the timeout
        ├── RemoteStatusError                an HTTP error status (``status_code``, ``body``)
        └── InvalidResponseError             an answer that cannot be trusted: bad JSON,
                                             missing/duplicate/out-of-range index, bad score
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "EngineError",
    "InvalidInputError",
    "InvalidResponseError",
    "MissingDependencyError",
    "ModelLoadError",
    "Qwen3RerankError",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteStatusError",
    "RemoteTimeoutError",
    "clip",
]


def clip(value: object, limit: int = 300) -> str:
    """``value`` as one line of at most ``limit`` characters, for error messages: servers and
    transformers answer with pages of text, and an error (a CLI's especially) must fit a line."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


class RemoteError(Qwen3RerankError):
    """A rerank server could not give a usable answer."""

    retryable: bool = False


class RemoteConnectionError(RemoteError):
    """The server could not be reached, or dropped the connection."""

    retryable = True


class RemoteTimeoutError(RemoteError):
    """The server did not answer within the timeout."""

    retryable = True


class RemoteStatusError(RemoteError):
    """The server answered with an HTTP error status (``retry_after``: the seconds its
    ``Retry-After`` header asked to wait, if it sent one)."""

    def __init__(
        self, status_code: int, body: str, url: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{url} answered HTTP {status_code}: {clip(body, 500)}")
        self.status_code = status_code
        self.body = body
        self.retry_after = retry_after
        self.retryable = status_code == 429 or status_code >= 500


class InvalidResponseError(RemoteError):
    """The server's answer is malformed or does not match the documents sent."""
