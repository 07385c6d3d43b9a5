"""LlamaIndex node postprocessor that reranks with Qwen3-Reranker (extra ``[llama-index]``)."""

from .base import Qwen3Rerank

__all__ = ["Qwen3Rerank"]
