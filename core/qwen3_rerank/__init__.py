"""qwen3-rerank: exact Qwen3-Reranker scoring for retrieval pipelines.

Heavy libraries (torch, transformers) are imported only when an engine that needs them is built.
"""

from .errors import (
    ConfigurationError,
    EngineError,
    InvalidInputError,
    InvalidResponseError,
    MissingDependencyError,
    ModelLoadError,
    Qwen3RerankError,
    RemoteConnectionError,
    RemoteError,
    RemoteStatusError,
    RemoteTimeoutError,
)
from .prompt import DEFAULT_INSTRUCTION, format_pair
from .reranker import Reranker
from .results import RerankResult

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_INSTRUCTION",
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
    "RerankResult",
    "Reranker",
    "__version__",
    "format_pair",
]
