"""Scoring engines behind ``Reranker``: the :class:`Engine` protocol and a registry by name.

``create("torch", model, device="cpu")`` builds an engine; ``register`` adds one. Engine
modules (torch, vLLM, httpx) are imported only when their engine is built.
"""

from .base import Engine, Progress, ScoredDocuments, ScoreRequest
from .registry import AUTO, create, names, options_class, register, resolve

__all__ = [
    "AUTO",
    "Engine",
    "Progress",
    "ScoreRequest",
    "ScoredDocuments",
    "create",
    "names",
    "options_class",
    "register",
    "resolve",
]
