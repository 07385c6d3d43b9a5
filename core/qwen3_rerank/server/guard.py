"""ASGI middleware in front of every route: JSON bodies only, the body size limit enforced
while the body streams in (chunked uploads too), and for every request the route/status
metrics and one structured access-log line (method, route, status, time, documents: never a
document's text or the API key)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .metrics import Metrics

__all__ = ["ACCESS_LOG", "Guard"]

ACCESS_LOG = "qwen3_rerank.access"
_access = logging.getLogger(ACCESS_LOG)


class Guard:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics, access_log: bool = True
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_and_note)
            else:
                await self.app(scope, self._limited(receive), send_and_note)
        except asyncio.CancelledError:
            # uvicorn cancels requests still running when its shutdown grace period ends
            if status == 0:
                stopping = error_response(
                    503, "server shutting down: grace period over", headers={"Retry-After": "1"}
                )
                await stopping(scope, receive, send_and_note)
        finally:
            self._record(scope, status or 500, time.perf_counter() - start)

    def _refusal(self, scope: Scope) -> Any:
        """A response refusing the request outright, or ``None``."""
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return error_response(
                415, f"Content-Type must be application/json, got {media or 'none'!r}"
            )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return error_response(413, f"body over the limit of {self.max_body_bytes} bytes")
        return None

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # an HTTPException passes FastAPI's body reading unchanged
                    raise HTTPException(413, f"body over the limit of {limit} bytes")
            return message

        return receive_limited

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.latency.labels(route).observe(seconds)
        if self.access_log and _access.isEnabledFor(logging.INFO):
            client = scope.get("client")
            line = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "ms": round(seconds * 1000, 1),
                "client": f"{client[0]}:{client[1]}" if client else None,
                "documents": scope.get("state", {}).get("documents"),
            }
            _access.info(json.dumps(line))
