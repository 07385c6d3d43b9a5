"""LangChain document compressor that reranks with Qwen3-Reranker (extra ``[langchain]``)."""

from .compressor import Qwen3Rerank

__all__ = ["Qwen3Rerank"]
