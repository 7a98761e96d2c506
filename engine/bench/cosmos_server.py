"""A local `@vercel/cosmosdb-server` (from npm) for `waymark bench cosmos` and the tests: `LocalCosmosServer`.

It starts the server on a free loopback port over HTTPS with its self-signed certificate; the client it gives skips
TLS verification (that server only).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
# The well-known key of the Cosmos DB emulator: cosmosdb-server accepts any key, the SDK needs one in base64.
LOCAL_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

# Keep-alive on (the CLI's server closes every connection: a TLS handshake per request), loopback only, the port
# chosen by the OS on the first start (0) and kept across restarts; "LISTENING <port>" once ready.
_LAUNCHER = r"""
const { createHttpsServer } = require(process.argv[1]);
const server = createHttpsServer({ keepAlive: true });
server.keepAliveTimeout = 60000;
server.on("error", (err) => { console.error("ERROR " + err.message); process.exit(3); });
server.listen(parseInt(process.argv[2], 10), process.argv[3], () => {
  console.log("LISTENING " + server.address().port);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
"""


class CosmosServerMissing(RuntimeError):
    """node or node_modules/@vercel/cosmosdb-server is not installed."""


class LocalCosmosServer:
    """`@vercel/cosmosdb-server` (from npm) on a free loopback port, over HTTPS with its self-signed certificate.

    Its data is in memory: `stop()` then `start()` gives an empty account on the same port (clients keep their
    endpoint). Use `connection_verify=False` (`verify=False`) with it, and only with it.
    """

    def __init__(self, *, root: Path = ROOT, start_timeout: float = 30.0) -> None:
        self.package = root / "node_modules" / "@vercel" / "cosmosdb-server"
        node = shutil.which("node")
        if node is None or not (self.package / "package.json").exists():
            raise CosmosServerMissing(
                f"{self.package} (or node) is missing: the Cosmos tests and `waymark bench cosmos` need "
                "@vercel/cosmosdb-server from npm. Run `make test` (it runs `npm ci` from package-lock.json), "
                "or `npm ci` at the repository root.")
        self.node = node
        self.start_timeout = start_timeout
        self.port = 0
        self.key = LOCAL_KEY
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir = Path(tempfile.mkdtemp(prefix="waymark-cosmosdb-server-"))
        _started.add(self)

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("the server has not been started")
        return f"https://{HOST}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> LocalCosmosServer:
        if self.running:
            return self
        log = self._log_dir / f"server-{uuid.uuid4().hex[:8]}.log"
        with log.open("wb") as output:
            self._process = subprocess.Popen(
                [self.node, "-e", _LAUNCHER, str(self.package), str(self.port), HOST],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("LISTENING "):
                    self.port = int(line.split()[1])
                    return self
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"cosmosdb-server did not start (port {self.port or 'any'}): "
                           f"{log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        """Stop the server (its process only): new connections are refused, open ones are reset."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def __enter__(self) -> LocalCosmosServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def client(self, **options: Any) -> Any:
        """A client of this server (TLS not verified: the certificate is self-signed)."""
        from engine.drivers.cosmos import cosmos_client

        return cosmos_client(self.endpoint, key=self.key, verify=False, **options)


# Servers run in sessions of their own, so a Ctrl-C does not reach them: what was not stopped is stopped at exit.
_started: weakref.WeakSet[LocalCosmosServer] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_started):
        server.close()
