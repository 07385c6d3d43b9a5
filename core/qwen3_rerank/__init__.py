"""qwen3-rerank: exact Qwen3-Reranker scoring for retrieval pipelines.

Heavy libraries (torch, transformers) are imported only when an engine that needs them is built.
"""

from .errors import (
    ConfigurationError,
    EngineError,
    InvalidInputError,
    MissingDependencyError,
    ModelLoadError,
    Qwen3RerankError,
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
    "MissingDependencyError",
    "ModelLoadError",
    "Qwen3RerankError",
    "RerankResult",
    "Reranker",
    "__version__",
    "format_pair",
]
