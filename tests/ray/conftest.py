"""One local Ray cluster for the Ray tests, on 2 CPUs, shut down when the session ends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The cluster's address; its workers can import this repository's tests (fault injection)."""
    # Workers inherit the environment; the tests' own UDF wrappers live in tests/ray.
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), path) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()
        os.environ["PYTHONPATH"] = path
