"""Prometheus text metrics for the server, with no dependency."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Requests by status, documents scored, latency and batch-size histograms, queue depth."""

    def __init__(self) -> None:
        self.requests: Counter[int] = Counter()
        self.documents = 0
        self.latencies: list[float] = []
        self.queue_depth: Callable[[], int] = lambda: 0

    def count_request(self, status: int) -> None:
        self.requests[status] += 1

    def observe(self, documents: int, seconds: float) -> None:
        self.count_request(200)
        self.documents += documents
        self.latencies.append(seconds)

    def render(self, batch_sizes: list[int]) -> str:
        lines = ["# TYPE qwen3_rerank_requests_total counter"]
        lines += [
            f'qwen3_rerank_requests_total{{code="{c}"}} {n}'
            for c, n in sorted(self.requests.items())
        ]
        lines += [
            "# TYPE qwen3_rerank_documents_total counter",
            f"qwen3_rerank_documents_total {self.documents}",
            "# TYPE qwen3_rerank_queue_depth gauge",
            f"qwen3_rerank_queue_depth {self.queue_depth()}",
        ]
        lines += _histogram("qwen3_rerank_request_seconds", self.latencies, _LATENCY_BUCKETS)
        lines += _histogram("qwen3_rerank_batch_requests", batch_sizes, _BATCH_BUCKETS)
        return "\n".join(lines) + "\n"


def _histogram(name: str, values: list[float] | list[int], buckets: tuple[float, ...]) -> list[str]:
    lines = [f"# TYPE {name} histogram"]
    lines += [f'{name}_bucket{{le="{b}"}} {sum(1 for v in values if v <= b)}' for b in buckets]
    lines += [
        f'{name}_bucket{{le="+Inf"}} {len(values)}',
        f"{name}_sum {sum(values)}",
        f"{name}_count {len(values)}",
    ]
    return lines
