"""The Azure host's multi-tenant bounds through the HTTP function (real `azure.functions` objects): liveness answers
from memory, and failed authentications are limited per client address as the App Service front end reports it
(the last `X-Forwarded-For` entry: what a client writes in the header itself changes nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.cosmos_fixtures import CosmosAccount
from tests.functions.conftest import ADMIN_KEY, AzureEnv
from tests.functions.harness import http

BURST = 20  # the Azure host's burst of failed authentications per address


def test_failed_authentications_are_limited_per_client_address_behind_the_front_end(
        make_env: Callable[[str], AzureEnv], app_host: Any, cosmos_account: CosmosAccount,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_env(cosmos_account.server.endpoint)
    monkeypatch.setenv("WAYMARK_RATE_LIMIT_PER_ADDRESS", "0.001")  # nothing refills during the test
    app_host()
    assert http("GET", "/healthz").json() == {"status": "ok"}

    def guess(client: str, spoofed: str = "198.51.100.1") -> int:
        forwarded = {"x-forwarded-for": f"{spoofed}, {client}:50123"}
        return http("GET", "/tenants/acme/workflows", key="wmk_guess", headers=forwarded).status

    assert [guess("203.0.113.7") for _ in range(BURST)] == [401] * BURST
    refused = http("GET", "/tenants/acme/workflows", key="wmk_guess",
                   headers={"x-forwarded-for": "203.0.113.7:50124"})
    assert refused.status == 429 and refused.headers["retry-after"]
    assert guess("203.0.113.7", spoofed="192.0.2.99") == 429, "a client cannot choose its address"
    assert guess("203.0.113.8") == 401, "another client has its own bucket"
    ready = http("GET", "/readyz", key=ADMIN_KEY, headers={"x-forwarded-for": "203.0.113.7"})
    assert ready.status == 200, "the admin key is known without a lookup"
