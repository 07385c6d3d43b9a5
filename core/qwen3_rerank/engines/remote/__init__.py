"""The remote engine: scoring on a rerank server (vLLM, Cohere, Jina, TEI, Infinity, ours)."""

from .engine import RemoteEngine
from .options import RemoteOptions

__all__ = ["RemoteEngine", "RemoteOptions"]
