"""schemathesis over /openapi.json against a running server: no 5xx, and responses conform to the schema.

Driven by hand (operation strategies and hypothesis) rather than through schemathesis' pytest plugin, which does
not run under this pytest's version.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.integration.conftest import RunningServer, serve_api

TENANT = "fuzz"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    with serve_api(tmp_path_factory.mktemp("fuzz"), workers=1) as server:
        key = server.onboard(TENANT)
        yield server, key


def test_no_5xx_and_responses_conform(fuzz_server: tuple[RunningServer, str]) -> None:
    server, key = fuzz_server
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    failures: list[str] = []
    calls: list[str] = []
    for operation in operations:
        @settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            if "tenant" in (case.path_parameters or {}):
                case.path_parameters["tenant"] = TENANT  # reach the routes' logic, not only another tenant's 403
            calls.append(case.operation.path)
            response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            try:
                case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                         response_schema_conformance])
            except Exception as e:
                failures.append(f"{case.operation.method.upper()} {case.operation.path}: {response.status_code} "
                                f"{response.text[:300]!r}: {str(e)[:500]}")

        check()
    assert calls, "schemathesis made no request"
    assert failures == []
