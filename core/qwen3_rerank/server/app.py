"""``create_app``: the FastAPI app around any ``Reranker`` (``qwen3-rerank serve`` runs it;
it can also be mounted elsewhere, e.g. as a Ray Serve ingress).

All state lives on ``app.state`` (``service``: the reranker, scheduler and metrics;
``api_key``); the batching scheduler starts and stops with the app's lifespan, in whatever
event loop runs the app. Routes and their shapes: :mod:`.routes`, :mod:`.protocol`; the error
shape: :mod:`.errors`; the body limit, content type, metrics and access log: :mod:`.guard`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from .. import __version__
from ..errors import ConfigurationError, MissingDependencyError
from ..reranker import Reranker

try:
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(exc.name or "fastapi", "server") from exc

from .errors import install_error_handlers
from .guard import Guard
from .routes import router
from .service import Service

__all__ = ["create_app"]


def create_app(
    reranker: Reranker,
    *,
    model_name: str | Sequence[str],
    api_key: str | None = None,
    max_documents: int = 1000,
    max_queue: int = 256,
    max_body_bytes: int = 16 * 2**20,
    access_log: bool = True,
    allowed_origins: Sequence[str] = (),
) -> FastAPI:
    """Builds the app around a reranker the caller owns (and closes).

    Args:
        reranker: Scores every request.
        model_name: The name (or names) clients may send as ``model``; answers carry the first.
        api_key: Require ``Authorization: Bearer KEY`` on every route but ``/health``.
        max_documents: Most documents in one request (413 past it).
        max_queue: Most requests waiting for the engine (503 with ``Retry-After`` past it).
        max_body_bytes: Largest request body, counted as it streams in (413 past it).
        access_log: One structured line per request on the ``qwen3_rerank.access`` logger.
        allowed_origins: Web pages of these origins (``https://app.example.com``, or ``*`` for
            any) may call the API from a browser (CORS); none by default.

    Raises:
        ConfigurationError: An empty API key or no model name.
    """
    names = [model_name] if isinstance(model_name, str) else list(dict.fromkeys(model_name))
    if not names or not all(n.strip() for n in names):
        raise ConfigurationError("give at least one non-empty model name")
    if api_key is not None and not api_key.strip():
        raise ConfigurationError("the API key is empty; give a key or none")
    service = Service(reranker, model_names=names, max_documents=max_documents, max_queue=max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.scheduler.start()
        yield
        await service.scheduler.stop()

    app = FastAPI(
        title="qwen3-rerank",
        version=__version__,
        summary="Qwen3-Reranker scoring: vLLM, Cohere, Jina and TEI compatible rerank API",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.api_key = api_key
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(
        Guard, max_body_bytes=max_body_bytes, metrics=service.metrics, access_log=access_log
    )
    if allowed_origins:
        # added last, so outermost: the guard's own answers (413, 503) carry the headers too,
        # and a browser can read their errors
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app
