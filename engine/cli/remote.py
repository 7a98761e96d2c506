"""The client every `waymark` command that talks to a running server uses, and the options they share.

Every remote command takes `--url` (WAYMARK_URL, default http://127.0.0.1:8080), `--key` (WAYMARK_KEY), `--tenant`
(WAYMARK_TENANT, default demo) and `--json`. An error answer (problem+json) is printed as `title: detail`
(with each listed problem) and exits 1; a server that cannot be reached exits 2.

The commands themselves live by group: workflows.py, instances.py, triggers.py, tenants.py (onboard.py: onboarding
into a local data directory), operations.py, time_commands.py, parked.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer

from engine.cli import render

__all__ = ["DEFAULT_URL", "EXIT_CODES", "NOT_READY", "AdminKey", "AsJson", "Key", "LocalDir", "Remote", "Tenant",
           "Url", "Wait", "fail", "json_option", "read_json_file", "show_result"]

DEFAULT_URL = "http://127.0.0.1:8080"

Url = Annotated[str, typer.Option("--url", envvar="WAYMARK_URL", help="Server URL.")]
Key = Annotated[str | None, typer.Option("--key", envvar="WAYMARK_KEY", help="Tenant key (or the admin key).")]
AdminKey = Annotated[str | None, typer.Option("--key", envvar=["WAYMARK_ADMIN_KEY", "WAYMARK_KEY"],
                                              help="The admin key.")]
Tenant = Annotated[str, typer.Option("--tenant", "-t", envvar="WAYMARK_TENANT", help="Tenant id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Wait = Annotated[float, typer.Option("--wait", min=0, max=30, help="Wait up to N s for the result (Prefer: wait).")]

# `waymark trigger` (and `instances create`) exit codes: a script learns the outcome without parsing --json.
EXIT_CODES = {"applied": 0, "created": 0, "ignored": 3, "rejected": 4, "faulted": 5}
NOT_READY = 6  # --wait N ran out before the command was processed (it stays queued, and is processed later)
LocalDir = Annotated[Path | None, typer.Option("--data-dir", help="Read this local data directory instead of a "
                                                                  "server.")]


def fail(message: str, code: int) -> NoReturn:
    render.console.print(message, style="red", highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(code)


def json_option(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        fail(f"{name} is not JSON: {e}", 2)


class Remote:
    """A small client of the API: the tenant's paths, errors turned into messages and exit codes."""

    def __init__(self, url: str, key: str | None, tenant: str = "demo", *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.tenant = tenant
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def path(self, *parts: str) -> str:
        return "/tenants/" + "/".join(quote(part, safe="") for part in (self.tenant, *parts))

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), wait: float = 0,
             **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if wait > 0:
            headers["Prefer"] = f"wait={wait:g}"
        try:
            response = self.client.request(method, path, headers=headers, **kwargs)
        except httpx.ConnectError:
            fail(f"cannot connect to the Waymark server at {self.url}: is `waymark serve` running? "
                  "(set --url or WAYMARK_URL)", 2)
        except httpx.TimeoutException:
            fail(f"the Waymark server at {self.url} did not answer in time", 2)
        except httpx.HTTPError as e:
            fail(f"talking to {self.url} failed: {e}", 2)
        if response.status_code not in ok:
            _problem(response)
        return response

    def pages(self, path: str, params: dict[str, Any], *,
              every: bool = True) -> tuple[list[dict[str, Any]], str | None]:
        """A listing's items, following its continuations (or the first page only), and the continuation left."""
        params = dict(params)
        items: list[dict[str, Any]] = []
        while True:
            page = self.call("GET", path, params=params).json()
            items += page["items"]
            if not every or page["continuation"] is None:
                return items, page["continuation"]
            params["continuation"] = page["continuation"]


def _problem(response: httpx.Response) -> NoReturn:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "title" in body:
        errors = [f"{error.get('path')}: {error.get('message')}" for error in body.get("errors") or []
                  if isinstance(error, dict)]
        lines = [f"{body['title']}: {_headline(str(body.get('detail', '')), errors)}"]
        lines += [f"  ✗ {error}" for error in errors]
        if response.status_code == 401:
            lines.append("  (give a key with --key or WAYMARK_KEY)")
    else:
        lines = [f"HTTP {response.status_code}: {response.text[:500]}"]
    fail("\n".join(lines), 1)


def _headline(detail: str, errors: list[str]) -> str:
    """A problem's detail without the listed errors it repeats (an invalid definition's detail names each one,
    and each is printed on its own line below it)."""
    for error in errors:
        detail = detail.replace(error, "")
    return detail.rstrip(" :;,") if errors else detail


def read_json_file(path: Path) -> Any:
    from engine.domain import load_json

    try:
        return load_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read {path}: {e}", 2)
    except ValueError as e:
        fail(f"{path} is not JSON: {e}", 1)


def show_result(value: Any, as_json: bool, people: Any = None) -> None:
    if as_json or people is None:
        render.print_json(value)
    else:
        people(value)
