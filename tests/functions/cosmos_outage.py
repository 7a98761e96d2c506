"""A cosmosdb-server whose listener can be stopped and started again with its data kept: a Cosmos outage that
ends with the account as it was.

cosmosdb-server keeps its data in memory and builds a new, empty account each time it starts listening, so
stopping its process (as `LocalCosmosServer.stop` does) loses everything: an outage after which "the instance
reaches the right state" cannot be shown with it. This launcher runs the same package (`createHttpsServer`), and
on `stop` closes the listening socket and drops every open connection — clients get exactly what a stopped server
gives them, connection refused or reset — while the process, and the account in its memory, stay. `start` listens
on the same port again. The account survives because the package's own "listening" handler (which makes the
account) is removed after the first start.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "node_modules" / "@vercel" / "cosmosdb-server"
HOST = "127.0.0.1"

_LAUNCHER = r"""
const readline = require("readline");
const { createHttpsServer } = require(process.argv[1]);
const host = process.argv[2];
const server = createHttpsServer({ keepAlive: true });
server.keepAliveTimeout = 60000;
let port = 0;
server.once("listening", () => {
  // cosmosdb-server's own handler ran first and made the account: keep that one across restarts.
  server.removeAllListeners("listening");
  port = server.address().port;
  console.log("LISTENING " + port);
});
server.on("error", (err) => { console.log("ERROR " + err.message); });
server.listen(0, host);
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "stop") {
    server.close();
    server.closeAllConnections();
    console.log("STOPPED");
  } else if (line === "start") {
    server.listen(port, host, () => console.log("STARTED"));
  }
});
process.stdin.on("end", () => process.exit(0));
"""


class PausableCosmosServer:
    """cosmosdb-server on a loopback port, with `stop()`/`start()` that keep its data (see the module docstring)."""

    key = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

    def __init__(self, *, timeout: float = 30.0) -> None:
        node = shutil.which("node")
        if node is None or not (PACKAGE / "package.json").exists():
            raise RuntimeError(f"{PACKAGE} (or node) is missing: run `npm ci` at the repository root")
        self.timeout = timeout
        self._lines: queue.Queue[str] = queue.Queue()
        self._process = subprocess.Popen([node, "-e", _LAUNCHER, str(PACKAGE), HOST], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                         start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.port = int(self._expect("LISTENING").split()[1])
        self.running = True

    @property
    def endpoint(self) -> str:
        return f"https://{HOST}:{self.port}/"

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.strip())

    def _expect(self, word: str) -> str:
        while True:
            try:
                line = self._lines.get(timeout=self.timeout)
            except queue.Empty:
                raise RuntimeError(f"cosmosdb-server did not say {word} within {self.timeout} s") from None
            if line.startswith(word):
                return line
            if line.startswith("ERROR"):
                raise RuntimeError(f"cosmosdb-server: {line}")

    def _say(self, command: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()

    def stop(self) -> None:
        """Stop listening and drop every connection (the data stays in the process)."""
        self._say("stop")
        self._expect("STOPPED")
        self.running = False

    def start(self) -> None:
        self._say("start")
        self._expect("STARTED")
        self.running = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        if self._process.stdout is not None:
            self._process.stdout.close()
