"""Fixtures of the dashboard tests: a real server (one per module), tenants with the `payments` workflow (whose
`split` trigger with `parts: 0` faults an instance), and a logged-in browser-like HTTP client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.conftest import RunningServer, serve_api
from tests.integration.test_operations import PAYMENTS
from tests.ui.helpers import Tenant, browser_client, log_in


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_api(tmp_path_factory.mktemp("waymark-ui")) as running:
        yield running


def onboard(server: RunningServer, prefix: str) -> Iterator[Tenant]:
    tenant = f"{prefix}-{uuid.uuid4().hex[:6]}"
    key = server.onboard(tenant, samples=True)
    with server.client(key) as api:
        assert api.put(f"/tenants/{tenant}/workflows/payments", json=PAYMENTS).status_code in (200, 201)
        yield Tenant(tenant, key, api)


@pytest.fixture(scope="module")
def tenant(ui_server: RunningServer) -> Iterator[Tenant]:
    yield from onboard(ui_server, "ops")


@pytest.fixture(scope="module")
def other_tenant(ui_server: RunningServer) -> Iterator[Tenant]:
    yield from onboard(ui_server, "other")


@pytest.fixture
def session(ui_server: RunningServer, tenant: Tenant) -> Iterator[httpx.Client]:
    with browser_client(ui_server) as http:
        response = log_in(http, tenant.key)
        assert response.status_code == 303, response.text
        yield http
