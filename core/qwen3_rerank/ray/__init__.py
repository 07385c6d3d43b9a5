"""Scale-out on Ray (extra ``[ray]``): batch scoring with Ray Data, online serving with Ray Serve.

- :class:`RerankBatches` and :func:`rerank_dataset`: score a ``ray.data.Dataset`` of
  query-document rows with one ``Reranker`` per actor (``qwen3_rerank.ray.batch``).
- :func:`rerank_deployment` and :func:`build_app`: the ``qwen3-rerank serve`` HTTP app as a Ray
  Serve deployment, one engine and one batching queue per replica (``qwen3_rerank.ray.serve``).

The names are imported lazily, so ``import qwen3_rerank.ray`` alone needs neither Ray nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real names for type checkers; at run time they load on first use
    from .batch import RerankBatches, rerank_dataset
    from .serve import build_app, rerank_deployment

__all__ = ["RerankBatches", "build_app", "rerank_dataset", "rerank_deployment"]


def __getattr__(name: str) -> Any:
    if name in ("RerankBatches", "rerank_dataset"):
        from . import batch

        return getattr(batch, name)
    if name in ("rerank_deployment", "build_app"):
        from . import serve

        return getattr(serve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
