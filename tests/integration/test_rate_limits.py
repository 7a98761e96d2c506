"""Rate limits over real HTTP: per key on the API, per client address on failed authentications and on the
dashboard login, each a 429 problem with `Retry-After` (limits set low so that a test reaches them)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import ADMIN_KEY, serve_api
from tests.integration.test_api import problem
from tests.ui.helpers import browser_client, csrf_of

pytestmark = pytest.mark.integration

SLOW = 0.001  # a token every 1000 s: nothing refills during a test


def test_a_key_past_its_rate_gets_429_and_other_keys_do_not(tmp_path: Path) -> None:
    with serve_api(tmp_path, workers=0, rate_limit_per_key=SLOW, rate_limit_burst_per_key=5) as server:
        acme, globex = server.onboard("acme", samples=False), server.onboard("globex", samples=False)
        with server.client(acme) as http:
            assert [http.get("/tenants/acme/workflows").status_code for _ in range(5)] == [200] * 5
            response = http.get("/tenants/acme/workflows")
            body = problem(response, 429)
            assert int(response.headers["retry-after"]) >= 1 and body["retryAfter"] >= 1
            assert "requests a second" in body["detail"]
            problem(http.post("/tenants/acme/instances", json={"workflowId": "w"}), 429)
        with server.client(globex) as http:
            assert http.get("/tenants/globex/workflows").status_code == 200, "one tenant's bucket is its own"
        with server.client() as anonymous:
            assert anonymous.get("/healthz").status_code == 200, "liveness is not limited"


def test_failed_authentications_from_an_address_get_429_before_any_lookup(tmp_path: Path) -> None:
    with serve_api(tmp_path, workers=0, rate_limit_per_address=SLOW, rate_limit_burst_per_address=3,
                   auth_cache_seconds=60) as server:
        key = server.onboard("acme", samples=False)
        with server.client(key) as http:
            assert http.get("/tenants/acme/workflows").status_code == 200  # now cached
        with server.client("wmk_guess") as guessing:
            assert [guessing.get("/tenants/acme/workflows").status_code for _ in range(3)] == [401] * 3
            response = guessing.get("/tenants/acme/workflows")
            problem(response, 429)
            assert response.headers["retry-after"]
        with server.client() as anonymous:
            problem(anonymous.post("/tenants", json={"id": "x"}), 429)
        with server.client(key) as http:
            assert http.get("/tenants/acme/workflows").status_code == 200, "a key checked lately is not held up"
        with server.client(ADMIN_KEY) as admin:
            assert admin.get("/readyz").status_code == 200, "the admin key is known without a lookup"


def test_failed_logins_get_429_on_the_login_page_and_as_a_problem(tmp_path: Path) -> None:
    with (serve_api(tmp_path, workers=0, rate_limit_per_address=SLOW, rate_limit_burst_per_address=2) as server,
          browser_client(server) as browser):
        def attempt(key: str, accept: str) -> httpx.Response:
            form = browser.get("/ui/login")
            return browser.post("/ui/login", data={"csrf": csrf_of(form.text), "key": key, "next": "/ui/"},
                                headers={"Accept": accept})

        assert [attempt("wmk_wrong", "text/html").status_code for _ in range(2)] == [401, 401]
        page = attempt("wmk_wrong", "text/html,application/xhtml+xml")
        assert page.status_code == 429 and page.headers["retry-after"]
        assert "text/html" in page.headers["content-type"] and "Too many failed" in page.text
        body = problem(attempt(server.onboard("acme", samples=False), "application/json"), 429)
        assert "Too many failed authentications" in body["detail"], "even a right key waits its turn"
