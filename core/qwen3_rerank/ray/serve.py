"""The ``qwen3-rerank serve`` HTTP app as a Ray Serve deployment.

Each replica loads one ``Reranker`` and builds the very app ``qwen3-rerank serve`` runs
(``server.app.create_app``) as its FastAPI ingress: the same routes, errors, ``/health`` and
``/metrics``, and its own batching queue, started by the app's lifespan, so requests that reach
a replica together are scored together. Ray Serve routes requests across replicas, restarts
replicas that die or fail their health check, and scales their number between bounds.

Every answer carries the ``x-qwen3-rerank-replica`` header (the replica's id), so a client or a
test can see which replica answered; ``/metrics`` reports the replica that answers it.

Run it from Python (:func:`rerank_deployment`), from the CLI (``qwen3-rerank serve --ray``) or
with Ray's own CLI (``serve run qwen3_rerank.ray.serve:build_app model=...``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from ..reranker import Reranker
from ..server.app import create_app

try:
    from pydantic import BaseModel, ConfigDict, Field
    from ray import serve
    from ray.serve import Application
    from starlette.requests import Request
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - depends on the environment
    from ..errors import MissingDependencyError

    raise MissingDependencyError(exc.name or "ray", "ray") from exc

__all__ = ["REPLICA_HEADER", "RerankAppArgs", "RerankServer", "build_app", "rerank_deployment"]

REPLICA_HEADER = "x-qwen3-rerank-replica"


@serve.ingress()
class RerankServer:
    """One replica: a ``Reranker`` and the server app around it (the deployment's ingress)."""

    def __init__(
        self,
        model: str,
        server_options: dict[str, Any],
        reranker_options: dict[str, Any],
    ) -> None:
        self.reranker = Reranker(model, **reranker_options)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.server_options = server_options

    def __serve_build_asgi_app__(self) -> Any:
        app = create_app(self.reranker, **self.server_options)
        replica = self.replica

        @app.middleware("http")
        async def name_the_replica(request: Request, call_next: Any) -> Response:
            response: Response = await call_next(request)
            response.headers[REPLICA_HEADER] = replica
            return response

        return app

    async def check_health(self) -> None:
        """Ray Serve calls this periodically; a replica whose engine fails is replaced."""
        await self.reranker.ascore("health check", ["the engine still scores"])

    def __del__(self) -> None:
        reranker = getattr(self, "reranker", None)
        if reranker is not None:
            reranker.close()


def rerank_deployment(
    model: str | os.PathLike[str],
    *,
    model_name: str | list[str] | None = None,
    num_replicas: int = 1,
    max_replicas: int | None = None,
    target_ongoing_requests: float = 32,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    api_key: str | None = None,
    max_documents: int = 1000,
    max_queue: int = 256,
    allowed_origins: Sequence[str] = (),
    **reranker_options: Any,
) -> Application:
    """A Ray Serve application serving ``/v1/rerank`` (and the rest of the server's routes).

    Args:
        model: Hub id or local folder, loaded once per replica.
        model_name: The name (or names) clients may send as ``model`` (default: ``model``).
        num_replicas: Replicas (with ``max_replicas``: the fewest kept while autoscaling).
        max_replicas: Autoscale between ``num_replicas`` and this many replicas.
        target_ongoing_requests: Autoscaling aims at this many requests in flight per replica.
        num_gpus: GPUs per replica (1: one replica per GPU).
        num_cpus: CPUs per replica (default: 1 without GPUs, Ray's default with them).
        api_key, max_documents, max_queue, allowed_origins: As for ``qwen3-rerank serve``;
            ``max_queue`` is also how many requests Ray lets into one replica at once, so they
            can batch together.
        **reranker_options: Passed to ``Reranker`` (``engine``, ``device``, ``dtype``, ...).
    """
    model = os.fspath(model)
    if num_replicas < 1 or (max_replicas is not None and max_replicas < num_replicas):
        raise ConfigurationError(
            f"need 1 <= num_replicas <= max_replicas, got {num_replicas} and {max_replicas}"
        )
    actor_options: dict[str, Any] = {"num_gpus": num_gpus}
    if num_cpus is not None or not num_gpus:
        actor_options["num_cpus"] = 1 if num_cpus is None else num_cpus
    scaling: dict[str, Any] = (
        {"num_replicas": num_replicas}
        if max_replicas is None
        else {
            "autoscaling_config": {
                "min_replicas": num_replicas,
                "max_replicas": max_replicas,
                "target_ongoing_requests": target_ongoing_requests,
            }
        }
    )
    deployment = serve.deployment(
        name="qwen3-rerank",
        ray_actor_options=actor_options,
        max_ongoing_requests=max_queue,
        **scaling,
    )(RerankServer)
    server_options = {
        "model_name": model_name or model,
        "api_key": api_key,
        "max_documents": max_documents,
        "max_queue": max_queue,
        "allowed_origins": list(allowed_origins),
    }
    app: Application = deployment.bind(model, server_options, reranker_options)
    return app


class RerankAppArgs(BaseModel):
    """``serve run qwen3_rerank.ray.serve:build_app key=value ...`` arguments (or a config
    file's ``args``); the names are :func:`rerank_deployment`'s."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    model_name: str | list[str] | None = None
    num_replicas: int = Field(default=1, ge=1)
    max_replicas: int | None = Field(default=None, ge=1)
    target_ongoing_requests: float = Field(default=32, gt=0)
    num_gpus: float = Field(default=0, ge=0)
    num_cpus: float | None = Field(default=None, ge=0)
    api_key: str | None = None
    max_documents: int = Field(default=1000, ge=1)
    max_queue: int = Field(default=256, ge=1)
    allowed_origins: list[str] = []
    engine: str = "auto"
    device: str | None = None
    dtype: str | None = None
    max_length: int = Field(default=8192, ge=1)
    max_batch_tokens: int | None = Field(default=None, ge=1)


def build_app(args: RerankAppArgs) -> Application:
    """The application builder ``serve run`` calls."""
    options = args.model_dump(exclude_none=True)
    return rerank_deployment(options.pop("model"), **options)
