"""The server's Prometheus metrics, on a registry of its own (several apps can share a process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Requests by route and status, latency by route, documents and prompt tokens scored,
    requests per engine call, queue depth, and requests dropped because their client left."""

    def __init__(self, queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "qwen3_rerank_requests",
            "HTTP requests answered, by route and status code",
            ["route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "qwen3_rerank_request_seconds",
            "Time from request to answer, by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.documents = Counter(
            "qwen3_rerank_documents", "Documents scored by the engine", registry=self.registry
        )
        self.prompt_tokens = Counter(
            "qwen3_rerank_prompt_tokens",
            "Prompt tokens scored, Qwen3 template included",
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "qwen3_rerank_batch_requests",
            "Requests per engine call",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.cancelled = Counter(
            "qwen3_rerank_cancelled_requests",
            "Requests whose client hung up before the answer (dropped unless in the engine)",
            registry=self.registry,
        )
        depth = Gauge(
            "qwen3_rerank_queue_depth", "Requests waiting for the engine", registry=self.registry
        )
        depth.set_function(lambda: float(queue_depth()))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
