"""The HTTP API: vLLM / Cohere / Jina style ``/rerank`` on any ``Reranker``.

``POST /v1/rerank`` (also ``/rerank`` and ``/v2/rerank``) takes ``query``, ``documents``
(strings or ``{"text": ...}`` objects), optional ``model``, ``top_n`` (0 or absent: all),
``return_documents``, and ``instruction``; it answers vLLM's shape, which Cohere and Jina
clients also read: ``{id, model, usage, results: [{index, relevance_score, document}]}``,
best first. The server applies the Qwen3 template itself (clients send plain text).
``GET /health``, ``GET /v1/models`` and ``GET /metrics`` (Prometheus text) complete it.

Errors are JSON ``{"object": "error", "message", "type", "code"}``: 400 malformed JSON,
401 missing or wrong API key, 404 unknown model, 413 body or document count over the
limit, 422 wrong or missing fields, 503 (with ``Retry-After``) when the queue is full.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..errors import InvalidInputError, MissingDependencyError, Qwen3RerankError
from ..reranker import Reranker, rank
from .metrics import Metrics
from .scheduler import BatchScheduler, Overloaded

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(exc.name or "fastapi", "server") from exc

__all__ = ["create_app"]

RERANK_PATHS = ("/v1/rerank", "/rerank", "/v2/rerank")


class _Document(BaseModel):
    text: str


class RerankBody(BaseModel):
    """The union of the vLLM, Cohere and Jina request shapes, plus ``instruction``."""

    model_config = ConfigDict(extra="ignore")

    query: str
    documents: list[str | _Document]
    model: str | None = None
    top_n: int | None = Field(default=None, ge=0)
    return_documents: bool = True
    instruction: str | None = None


class _Error(Exception):
    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers


def create_app(
    reranker: Reranker,
    *,
    model_name: str,
    api_key: str | None = None,
    max_documents: int = 1000,
    max_queue: int = 256,
    max_body_bytes: int = 16 * 2**20,
) -> FastAPI:
    """Builds the app around a reranker the caller owns (and closes)."""
    metrics = Metrics()
    scheduler = BatchScheduler(
        reranker.engine, max_queue=max_queue, on_batch=metrics.batch_requests.observe
    )
    metrics.queue_depth = lambda: scheduler.depth

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        yield
        await scheduler.stop()

    app = FastAPI(title="qwen3-rerank", lifespan=lifespan)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise _Error(
                401, "missing or wrong API key", "unauthorized", {"WWW-Authenticate": "Bearer"}
            )

    async def read_body(request: Request) -> RerankBody:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise _Error(413, f"body over {max_body_bytes} bytes", "payload_too_large")
        raw = await request.body()
        if len(raw) > max_body_bytes:
            raise _Error(413, f"body over {max_body_bytes} bytes", "payload_too_large")
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Error(400, f"malformed JSON: {exc}", "bad_request") from exc
        try:
            body = RerankBody.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise _Error(422, problems, "invalid_request") from exc
        if body.model not in (None, model_name):
            raise _Error(
                404, f"model {body.model!r} is not served here ({model_name!r} is)", "not_found"
            )
        if len(body.documents) > max_documents:
            raise _Error(
                413,
                f"{len(body.documents)} documents, over the limit of {max_documents}",
                "payload_too_large",
            )
        return body

    @app.exception_handler(_Error)
    async def on_error(request: Request, exc: _Error) -> JSONResponse:
        metrics.count_request(exc.status)
        return JSONResponse(
            {"object": "error", "message": exc.message, "type": exc.kind, "code": exc.status},
            status_code=exc.status,
            headers=exc.headers,
        )

    async def rerank_endpoint(request: Request) -> JSONResponse:
        start = time.perf_counter()
        check_key(request)
        body = await read_body(request)
        texts = [d if isinstance(d, str) else d.text for d in body.documents]
        try:
            score_request = reranker.validate(body.query, texts, body.instruction)
        except InvalidInputError as exc:
            raise _Error(422, str(exc), "invalid_request") from exc
        if texts:
            try:
                scored = await scheduler.submit(score_request)
            except Overloaded:
                raise _Error(
                    503, "server busy: queue full, retry later", "overloaded", {"Retry-After": "1"}
                ) from None
            except Qwen3RerankError as exc:
                raise _Error(500, str(exc), "engine_error") from exc
            results = rank(texts, scored, body.top_n or None, None)
        else:
            results = []
        metrics.observe(len(texts), time.perf_counter() - start)
        out: list[dict[str, Any]] = []
        for r in results:
            item: dict[str, Any] = {"index": r.index, "relevance_score": r.score}
            if body.return_documents:
                item["document"] = {"text": r.document}
            out.append(item)
        return JSONResponse(
            {
                "id": f"rerank-{uuid.uuid4().hex}",
                "model": model_name,
                "usage": {"total_documents": len(texts)},
                "results": out,
            }
        )

    for path in RERANK_PATHS:
        app.add_api_route(path, rerank_endpoint, methods=["POST"])

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_key(request)
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "owned_by": "qwen3-rerank"}],
        }

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> PlainTextResponse:
        check_key(request)
        return PlainTextResponse(metrics.render())

    return app
