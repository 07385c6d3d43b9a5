"""The server's Prometheus histograms: inclusive upper bounds, cumulative counts."""

from __future__ import annotations

from qwen3_rerank.server.metrics import Histogram


def test_histogram_counts_cumulatively_at_inclusive_bounds() -> None:
    h = Histogram("x", (1, 2, 4))
    for value in (0.5, 1, 1.5, 2, 3, 10):
        h.observe(value)
    header, *lines = h.render()
    assert header == "# TYPE x histogram"
    assert dict(line.rsplit(" ", 1) for line in lines) == {
        'x_bucket{le="1"}': "2",
        'x_bucket{le="2"}': "4",
        'x_bucket{le="4"}': "5",
        'x_bucket{le="+Inf"}': "6",
        "x_sum": "18.0",
        "x_count": "6",
    }
