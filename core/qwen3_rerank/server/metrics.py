"""Prometheus text metrics for the server, with no dependency."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable

__all__ = ["Histogram", "Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    """A Prometheus histogram kept as bucket counts, a sum and a count: constant memory and
    scrape time however long the server runs (it kept every value before)."""

    def __init__(self, name: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # per bucket, then above the last one
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1  # the first bound >= value
        self.sum += value
        self.count += 1

    def render(self) -> list[str]:
        lines, cumulative = [f"# TYPE {self.name} histogram"], 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            cumulative += n
            lines.append(f'{self.name}_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {self.sum}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class Metrics:
    """Requests by status, documents scored, latency and batch-size histograms, queue depth."""

    def __init__(self) -> None:
        self.requests: Counter[int] = Counter()
        self.documents = 0
        self.latency = Histogram("qwen3_rerank_request_seconds", _LATENCY_BUCKETS)
        self.batch_requests = Histogram("qwen3_rerank_batch_requests", _BATCH_BUCKETS)
        self.queue_depth: Callable[[], int] = lambda: 0

    def count_request(self, status: int) -> None:
        self.requests[status] += 1

    def observe(self, documents: int, seconds: float) -> None:
        self.count_request(200)
        self.documents += documents
        self.latency.observe(seconds)

    def render(self) -> str:
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
        lines += self.latency.render()
        lines += self.batch_requests.render()
        return "\n".join(lines) + "\n"
