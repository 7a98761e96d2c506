"""`waymark tenants onboard ID --azure --resource-group RG --cosmos-account A --app-url URL`: a tenant on Azure in
one step — deploy infra/tenant.bicep with `az`, then register the tenant through the deployed app's API (admin key),
and print its key once.

Each step can be run again, and re-running the whole command finishes what an earlier run left half done:

    step        how it is safe to repeat
    deploy      an ARM deployment of the same template and parameters changes nothing that is there already
    register    `POST /tenants`: the app records the tenant as `provisioning`, verifies its storage, and only then
                issues the key and makes it active; a run that failed before that (storage not answering yet, the app
                unreachable) is resumed by the next POST, which issues the one key shown
    done        a tenant active already answers 409: the command verifies its storage
                (`POST /tenants/{t}/verify`) and says so; its key is not shown again (`--rotate-key` issues a new one
                and the old one stops working, for a key lost on the way)

`--print` shows the plan — the exact `az` command and the HTTP calls — and does nothing; `--what-if` runs
`az deployment group what-if` with the same parameters (it changes nothing). The admin key never appears in the
plan or on a command line: it is read from `--key` or WAYMARK_ADMIN_KEY and sent in a header.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer

from engine.cli import render

__all__ = ["AzureOnboarding", "onboard_on_azure"]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "infra/tenant.bicep"


@dataclass(frozen=True)
class AzureOnboarding:
    tenant_id: str
    resource_group: str
    cosmos_account: str
    app_url: str
    database: str | None = None
    create_event_grid_topic: bool = False
    app_principal_id: str | None = None
    template: str = TEMPLATE

    def deploy_command(self, *, what_if: bool = False) -> list[str]:
        """The `az` words (shlex-quoted when printed)."""
        from engine.tenants.onboarding import tenant_bicep_command

        words = shlex.split(tenant_bicep_command(
            self.tenant_id, self.resource_group, cosmos_account=self.cosmos_account, database=self.database,
            create_event_grid_topic=self.create_event_grid_topic, app_principal_id=self.app_principal_id,
            template=self.template))
        if what_if:
            words[3] = "what-if"
            words = words[:words.index("--query")]  # what-if prints the changes, not outputs
        return words

    def plan(self) -> list[str]:
        base = self.app_url.rstrip("/")
        return [shlex.join(self.deploy_command()),
                f"POST {base}/tenants  (admin key)  {{\"id\": \"{self.tenant_id}\", \"config\": "
                "<outputs.tenantConfiguration>}   201: the key, shown once; 503: storage not verified yet (run "
                "again); 409: onboarded already",
                f"POST {base}/tenants/{self.tenant_id}/verify  (admin key)   on 409: its storage answers",
                f"POST {base}/tenants/{self.tenant_id}/keys  (admin key)   on 409 with --rotate-key only"]


def _fail(message: str, code: int) -> NoReturn:
    render.console.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _az(words: list[str], az: str | None) -> str:
    executable = az or shutil.which("az")
    if executable is None:
        _fail("`az` (the Azure CLI) is not installed here. The plan (--print) is:\n" + shlex.join(words), 2)
    try:
        done = subprocess.run([executable, *words[1:]], capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        _fail(f"the deployment did not run: {e}. Run the command again: it is idempotent.", 2)
    if done.returncode != 0:
        _fail(f"the deployment failed (az exit {done.returncode}); nothing was registered. Run the command again "
              f"once the cause is fixed:\n{done.stderr.strip() or done.stdout.strip()}", 1)
    return done.stdout


def _call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return http.request(method, path, **kwargs)
    except httpx.HTTPError as e:
        _fail(f"the app at {http.base_url} did not answer ({type(e).__name__}: {e}); the storage is deployed. Run "
              "the command again to register the tenant.", 2)


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return f"{body.get('title')}: {body.get('detail')}" if isinstance(body, dict) else str(body)[:300]


def onboard_on_azure(onboarding: AzureOnboarding, *, admin_key: str | None, print_plan: bool, what_if: bool,
                     rotate_key: bool, as_json: bool, az: str | None = None) -> None:
    """Deploy, register, print (see the module docstring); `--print` and `--what-if` change nothing."""
    if print_plan:
        steps = onboarding.plan()
        if as_json:
            render.print_json({"id": onboarding.tenant_id, "plan": steps, "az": onboarding.deploy_command()})
        else:
            for number, step in enumerate(steps, start=1):
                typer.echo(f"{number}. {step}")
        return
    if what_if:
        typer.echo(_az(onboarding.deploy_command(what_if=True), az))
        return
    if not admin_key:
        _fail("registering through the app needs the admin key: --key or WAYMARK_ADMIN_KEY", 2)
    from engine.tenants.onboarding import config_from_outputs

    outputs = _az(onboarding.deploy_command(), az)
    try:
        config = config_from_outputs(outputs, auth="identity")
    except (ValueError, json.JSONDecodeError) as e:
        _fail(f"the deployment's outputs are not those of infra/tenant.bicep: {e}", 1)
    tenant = onboarding.tenant_id
    with httpx.Client(base_url=onboarding.app_url.rstrip("/"), timeout=120.0,
                      headers={"Authorization": f"Bearer {admin_key}"}) as http:
        registered = _call(http, "POST", "/tenants", json={"id": tenant, "config": config})
        if registered.status_code == 201:
            _done(tenant, registered.json()["key"], config, "onboarded: storage deployed and verified", as_json)
            return
        if registered.status_code != 409:
            _fail(f"registering {tenant!r} failed ({registered.status_code}) — {_problem(registered)}. The storage "
                  "is deployed; run the command again to finish.", 1 if registered.status_code < 500 else 2)
        verified = _call(http, "POST", f"/tenants/{tenant}/verify")
        if verified.status_code != 200:
            _fail(f"{tenant!r} is registered, but its storage does not answer ({verified.status_code}) — "
                  f"{_problem(verified)}", 2)
        if not rotate_key:
            _done(tenant, None, config, "onboarded already: storage verified; its key was shown when it was "
                                        "registered (--rotate-key issues a new one)", as_json)
            return
        rotated = _call(http, "POST", f"/tenants/{tenant}/keys")
        if rotated.status_code != 200:
            _fail(f"rotating the key of {tenant!r} failed ({rotated.status_code}) — {_problem(rotated)}", 1)
        _done(tenant, rotated.json()["key"], config, "onboarded already: storage verified; a new key (the old one no "
                                                     "longer works)", as_json)


def _done(tenant: str, key: str | None, config: dict[str, Any], what: str, as_json: bool) -> None:
    if as_json:
        render.print_json({"id": tenant, "key": key, "config": config, "storageVerified": True})
        return
    render.console.print(f"[green]✓[/] tenant [bold]{tenant}[/] {what}", highlight=False, soft_wrap=True)
    if key is not None:
        render.console.print("its key (shown once):", highlight=False)
        typer.echo(key)
