"""A real Waymark server for integration tests: uvicorn on 127.0.0.1 on a free port, in a background thread,
over a real SQLite engine and tenant registry in a temporary data directory, with queue worker threads.

Use the `api_server` fixture (one per test module) or, for a server of your own settings, `serve_api(...)`:

    def test_something(api_server: RunningServer) -> None:
        key = api_server.onboard("acme")
        with api_server.client(key) as http:
            http.post("/tenants/acme/instances", json={...})

The port is bound (port 0) before uvicorn starts, so there is no race for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from engine.hosting.local import Service, bind, open_service, url_of, uvicorn_config
from engine.hosting.settings import Settings
from engine.hosting.worker import WorkerPool
from engine.service.engine import Engine

ADMIN_KEY = "test-admin-key-0123456789abcdef"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@dataclass
class RunningServer:
    url: str
    admin_key: str
    service: Service
    workers: WorkerPool

    @property
    def engine(self) -> Engine:
        return self.service.engine

    @property
    def data_dir(self) -> Path:
        return self.service.settings.data_dir

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_key)

    def onboard(self, tenant: str, *, samples: bool = True) -> str:
        """Create a tenant through the API (and upload the sample workflows); returns its key."""
        with self.admin() as http:
            response = http.post("/tenants", json={"id": tenant})
            assert response.status_code == 201, response.text
            key: str = response.json()["key"]
        if samples:
            with self.client(key) as http:
                for path in sorted(SAMPLES.glob("*.json")):
                    workflow_id = path.stem
                    response = http.put(f"/tenants/{tenant}/workflows/{workflow_id}", content=path.read_bytes(),
                                        headers={"Content-Type": "application/json"})
                    assert response.status_code in (200, 201), response.text
        return key


@contextmanager
def serve_api(data_dir: Path, *, workers: int = 2, **overrides: Any) -> Iterator[RunningServer]:
    """Run a server until the block ends; then stop uvicorn, then the workers, and close the stores."""
    values: dict[str, Any] = {"data_dir": data_dir, "host": "127.0.0.1", "port": 0, "admin_key": ADMIN_KEY,
                              "workers": workers, "load_samples": False, "log_level": "warning",
                              "shutdown_timeout": 2.0, "auth_cache_seconds": 5.0}
    values.update(overrides)
    settings = Settings(**values)
    service = open_service(settings)
    sock = bind(settings.host, 0)
    server = uvicorn.Server(uvicorn_config(service.app, service.settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    pool = WorkerPool(service.engine, workers, visibility_timeout=settings.visibility_timeout)
    pool.start()
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield RunningServer(url_of(sock), ADMIN_KEY, service, pool)
    finally:
        server.should_exit = True
        thread.join(10)
        pool.stop(timeout=10)
        service.close()
        sock.close()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_api(tmp_path_factory.mktemp("waymark-api")) as running:
        yield running
