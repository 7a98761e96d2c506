"""Azurite (Azure Storage, from npm) as a real protocol peer for tests.

Registered as a pytest plugin by tests/conftest.py, so every test folder can ask for the session-scoped
`azurite` fixture; other modules may also import `AzuriteServer` to run a server of their own:

    def test_something(azurite: AzuriteServer) -> None:
        client = QueueClient.from_connection_string(azurite.connection_string, "commands")

    def test_a_restart(tmp_path: Path) -> None:
        with AzuriteServer(tmp_path, location=tmp_path / "data") as server:  # kept across stop()/start()
            ...
            server.stop()
            ...
            server.start()

The servers are `node_modules/.bin/azurite-{queue,blob,table}` (installed by `make test`, which runs `npm ci`),
started on 127.0.0.1 on free ports chosen at run time, with `--skipApiVersionCheck` (current SDKs send API
versions newer than Azurite knows), `--loose`, `--silent` and `--disableTelemetry`. By default the data is
in memory (`--inMemoryPersistence`), so `stop()` then `start()` gives an empty account on the same ports
(the connection string stays valid); pass `location=` to keep the data on disk across a restart.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_BIN = ROOT / "node_modules" / ".bin"

# The development storage account every Azurite (and the Storage emulator before it) accepts; public.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

HOST = "127.0.0.1"
SERVICES = ("queue", "blob", "table")
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


class AzuriteMissing(RuntimeError):
    """node_modules has no Azurite: the npm test tooling was not installed."""


class AzuriteFailed(RuntimeError):
    """An Azurite process did not come up (or exited); carries the tail of its log."""


def azurite_binary(service: str) -> Path:
    binary = NODE_BIN / f"azurite-{service}"
    if not binary.exists():
        raise AzuriteMissing(
            f"{binary} is missing: the Azure tests need Azurite from npm. "
            "Run `make test` (it runs `npm ci` from package-lock.json), or `npm ci` at the repository root."
        )
    return binary


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it). Azurite binds it a moment later; a rare clash
    makes the start fail and `start()` tries again with new ports."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class AzuriteServer:
    """One Azurite per storage service in `services` ("queue", "blob"), all on loopback."""

    def __init__(
        self,
        workdir: Path,
        *,
        services: tuple[str, ...] = ("queue",),
        location: Path | None = None,
    ) -> None:
        unknown = sorted(set(services) - set(SERVICES))
        if unknown or not services:
            raise ValueError(f"services must be some of {SERVICES}, not {services}")
        self.services = services
        self.workdir = Path(workdir)
        self.location = location  # None: in memory, lost on stop()
        self.ports: dict[str, int] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._binaries = {service: azurite_binary(service) for service in services}
        _started.add(self)

    # --- what tests use --------------------------------------------------------------------------------------

    @property
    def connection_string(self) -> str:
        parts = [
            "DefaultEndpointsProtocol=http",
            f"AccountName={ACCOUNT_NAME}",
            f"AccountKey={ACCOUNT_KEY}",
        ]
        parts += [f"{service.capitalize()}Endpoint={self.endpoint(service)}" for service in self.services]
        return ";".join(parts) + ";"

    def endpoint(self, service: str = "queue") -> str:
        """The service URL (account in the path, as Azurite serves it), e.g. http://127.0.0.1:PORT/devstoreaccount1."""
        if service not in self.ports:
            raise KeyError(f"Azurite {service} is not part of this server (services: {self.services})")
        return f"http://{HOST}:{self.ports[service]}/{ACCOUNT_NAME}"

    @property
    def running(self) -> bool:
        return bool(self._processes) and all(p.poll() is None for p in self._processes.values())

    def start(self) -> None:
        """Start every service and wait until each answers HTTP. The first start picks free ports; a restart
        reuses them, so clients built from `connection_string` keep working."""
        if self.running:
            return
        self.stop()
        attempts = 1 if self.ports else 3
        for attempt in range(1, attempts + 1):
            if attempt > 1 or not self.ports:
                self.ports = {service: free_port() for service in self.services}
            try:
                for service in self.services:
                    self._processes[service] = self._spawn(service)
                for service in self.services:
                    self._wait_until_answering(service)
                return
            except AzuriteFailed:
                self.stop()
                if attempt == attempts:
                    raise

    def stop(self) -> None:
        """Stop every service (SIGTERM, then SIGKILL after 10 s). Idempotent."""
        processes, self._processes = self._processes, {}
        for process in processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=_STOP_TIMEOUT)

    def __enter__(self) -> AzuriteServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- inside ----------------------------------------------------------------------------------------------

    def _log(self, service: str) -> Path:
        return self.workdir / f"azurite-{service}.log"

    def _spawn(self, service: str) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self._binaries[service]),
            f"--{service}Host", HOST,
            f"--{service}Port", str(self.ports[service]),
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            "--disableTelemetry",
        ]
        if self.location is None:
            command.append("--inMemoryPersistence")  # Azurite refuses it together with --location
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            command += ["--location", str(self.location)]
        with self._log(service).open("ab") as log:
            # A session of its own, so stop() can signal the whole process group.
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=self.workdir, start_new_session=True)

    def _wait_until_answering(self, service: str) -> None:
        process = self._processes[service]
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AzuriteFailed(f"Azurite {service} exited with {process.returncode}:\n{self._log_tail(service)}")
            if self._answers(service):
                return
            time.sleep(0.05)
        raise AzuriteFailed(f"Azurite {service} did not answer within {_START_TIMEOUT} s:\n{self._log_tail(service)}")

    def _answers(self, service: str) -> bool:
        """Any HTTP response (an unauthenticated list is refused with 403) means the server is serving."""
        connection = http.client.HTTPConnection(HOST, self.ports[service], timeout=2)
        try:
            connection.request("GET", f"/{ACCOUNT_NAME}?comp=list")
            connection.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            connection.close()

    def _log_tail(self, service: str, lines: int = 30) -> str:
        try:
            return "\n".join(self._log(service).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# Servers run in sessions of their own (so stop() can signal their process group), which also keeps a Ctrl-C
# of pytest from reaching them: whatever a fixture teardown did not stop is stopped when Python exits.
_started: weakref.WeakSet[AzuriteServer] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_started):
        server.stop()


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    """Azurite queue and blob services for the whole test session (in memory). A test that stops it must
    start it again before it ends (the data is then gone: use your own queue names)."""
    workdir = Path(tempfile.mkdtemp(prefix="waymark-azurite-"))
    problem = ""
    try:
        server = AzuriteServer(workdir, services=("queue", "blob"))
        server.start()
    except (AzuriteMissing, AzuriteFailed) as e:
        problem = str(e)
    if problem:  # failed, not skipped: a suite that silently skips its Azure half would pass for the wrong reason
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
