"""Helpers of the dashboard tests (the fixtures that use them are in conftest.py)."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import RunningServer
from tests.integration.test_operations import faulted_instance

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"
# The screenshots the documentation shows, by the name the browser tests save them under: `make screenshots` runs
# the browser tests with WAYMARK_DOCS_SCREENSHOTS=1, which copies each of these into docs/img/.
DOCS_SCREENSHOTS = {
    "01-login": "ui-login.png", "02-overview": "ui-overview.png", "03-instances-filtered": "ui-instances.png",
    "04-instance-faulted": "ui-instance-faulted.png", "05-confirm-dialog": "ui-confirm.png",
    "06-instance-recovered": "ui-instance-recovered.png", "07-live-feed": "ui-live-feed.png",
    "09-phone-instance": "ui-phone.png", "09-phone-diagram": "ui-phone-diagram.png",
    "10-dark-overview": "ui-dark.png", "11-diagram": "ui-diagram.png",
}


def saved(artifacts: Path, name: str) -> str:
    """Where a screenshot goes (test-artifacts/ui/NAME.png); `published` copies it into the docs when asked to."""
    return str(artifacts / f"{name}.png")


def published(artifacts: Path, name: str) -> None:
    """Copy a saved screenshot the documentation shows into docs/img/, under `make screenshots`."""
    if os.environ.get("WAYMARK_DOCS_SCREENSHOTS") == "1" and name in DOCS_SCREENSHOTS:
        shutil.copyfile(artifacts / f"{name}.png", DOCS_IMAGES / DOCS_SCREENSHOTS[name])


@dataclass
class Tenant:
    id: str
    key: str
    api: httpx.Client  # the HTTP API, with the tenant's key

    def faulted(self) -> str:
        """A new instance of `payments` that faulted (a division by zero in an action)."""
        return faulted_instance(self.id, self.api)

    def waiting(self, workflow: str = "payments", context: dict[str, Any] | None = None,
                prefix: str = "pay") -> str:
        instance_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
        response = self.api.post(f"/tenants/{self.id}/instances",
                                 json={"workflowId": workflow, "id": instance_id,
                                       "context": {"total": 10} if context is None else context},
                                 headers={"Prefer": "wait=10"})
        assert response.status_code == 201, response.text
        return instance_id

    def trigger(self, instance_id: str, topic: str, content: Any = None) -> str:
        response = self.api.post(f"/tenants/{self.id}/instances/{instance_id}/triggers",
                                 json={"topic": topic, "content": content}, headers={"Prefer": "wait=10"})
        assert response.status_code == 200, response.text
        outcome: str = response.json()["outcome"]
        return outcome

    def status_of(self, instance_id: str) -> str:
        status: str = self.api.get(f"/tenants/{self.id}/instances/{instance_id}").json()["status"]
        return status


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def browser_client(server: RunningServer, **kwargs: Any) -> httpx.Client:
    """A client that behaves like a browser: no bearer key, keeps cookies, does not follow redirects."""
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=30.0, **kwargs)


def log_in(http: httpx.Client, key: str, *, tenant: str = "", name: str = "",
           headers: dict[str, str] | None = None) -> httpx.Response:
    form = http.get("/ui/login")
    assert form.status_code == 200, form.text
    return http.post("/ui/login", data={"csrf": csrf_of(form.text), "key": key, "tenant": tenant, "name": name,
                                        "next": "/ui/"}, headers=headers)
