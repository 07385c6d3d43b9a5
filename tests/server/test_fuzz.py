"""Property-based fuzzing of the server's own OpenAPI schema (Schemathesis): generated requests
on every route, bounded in count and time; none may get a 5xx, and every answer must match the
documented schema (status codes and bodies, errors included)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .serving import AUTH


@pytest.fixture(scope="session")
def api_schema(served: str) -> Any:
    return schemathesis.openapi.from_url(served + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases on every run: a failure reproduces
)
def test_generated_requests_never_get_a_server_error(case: Any) -> None:
    response = case.call(headers=AUTH, timeout=30)
    case.validate_response(
        response,
        checks=(
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ),
    )
