"""`waymark tenants onboard --azure` (without `--app-url`) and `waymark tenants record-outputs`: provision a tenant
with infra/tenant.bicep (print the deployment command, or run it with `az`), then record the deployment's outputs as
the tenant's configuration in a local data directory's registry."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import render
from engine.cli.local_registry import (
    DataDir,
    onboarding_errors,
    onboarding_failed,
    open_local_registry,
    show_onboarded,
)
from engine.cli.remote import AsJson, fail

__all__ = ["onboard_with_bicep", "tenant_template", "tenants_record_outputs"]

ROOT = Path(__file__).resolve().parents[2]
TENANT_TEMPLATE = "infra/tenant.bicep"


def tenant_template() -> str:
    """infra/tenant.bicep: relative when run from a checkout's root (the command printed reads better), else whole."""
    return TENANT_TEMPLATE if Path(TENANT_TEMPLATE).is_file() else str(ROOT / TENANT_TEMPLATE)


def onboard_with_bicep(tenant_id: str, *, resource_group: str | None, cosmos_account: str | None,
                       database: str | None, create_event_grid_topic: bool, app_principal_id: str | None, run: bool,
                       data_dir: Path, as_json: bool) -> None:
    """Print the deployment command of infra/tenant.bicep, or (`run`) run it and record its outputs."""
    from engine.tenants.onboarding import tenant_bicep_command

    if not resource_group or not cosmos_account:
        fail("--azure needs --resource-group and --cosmos-account", 2)
    command = tenant_bicep_command(tenant_id, resource_group, cosmos_account=cosmos_account, database=database,
                                   create_event_grid_topic=create_event_grid_topic,
                                   app_principal_id=app_principal_id, template=tenant_template())
    if not run:
        _print_deployment(tenant_id, command, data_dir=data_dir, as_json=as_json)
        return
    outputs = _run_deployment(command, as_json=as_json)
    _record_outputs(tenant_id, outputs, auth="identity", data_dir=data_dir, as_json=as_json)


def _print_deployment(tenant_id: str, command: str, *, data_dir: Path, as_json: bool) -> None:
    if as_json:
        render.print_json({"id": tenant_id, "command": command})
        return
    render.console.print(f"Provision tenant [bold]{tenant_id}[/] with infra/tenant.bicep (it prints the "
                         "deployment's outputs):", highlight=False, soft_wrap=True)
    typer.echo(command)
    render.console.print(f"then record them: waymark tenants record-outputs {tenant_id} --outputs "
                         f"OUTPUTS.json --data-dir {data_dir}   (or run this with --run)",
                         highlight=False, soft_wrap=True, markup=False)


def _run_deployment(command: str, *, as_json: bool) -> str:
    """Run the deployment with `az`; its outputs (JSON) as it printed them."""
    az = shutil.which("az")
    if az is None:
        fail("`az` (the Azure CLI) is not installed here: run the command yourself:\n" + command, 2)
    words = shlex.split(command)
    if not as_json:
        render.console.print(f"running: {command}", highlight=False, soft_wrap=True, markup=False)
    try:
        done = subprocess.run([az, *words[1:]], capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        fail(f"the deployment did not run: {e}", 2)
    if done.returncode != 0:
        fail(f"the deployment failed (az exit {done.returncode}):\n{done.stderr.strip() or done.stdout.strip()}", 1)
    return done.stdout


def _record_outputs(tenant_id: str, outputs: str, *, auth: str, data_dir: Path, as_json: bool) -> None:
    from engine.tenants.onboarding import record_bicep_outputs

    registry = open_local_registry(data_dir)
    try:
        record, key = record_bicep_outputs(registry, tenant_id, outputs, auth=auth)
    except json.JSONDecodeError as e:
        fail(f"the outputs are not JSON: {e}", 1)
    except onboarding_errors() as e:
        onboarding_failed(e)
    finally:
        registry.close()
    what = "onboarded" if key is not None else "configuration replaced (its key is unchanged)"
    show_onboarded(record, key, as_json, f"{what}: Cosmos DB database [bold]{record.config.get('database')}[/] "
                                         f"at {record.config.get('cosmosEndpoint')}, auth {record.config.get('auth')}")


def tenants_record_outputs(
    tenant_id: str,
    outputs: Annotated[str, typer.Option("--outputs", help="The outputs of infra/tenant.bicep: a file, `-` for "
                                                           "stdin, or the JSON itself.")],
    auth: Annotated[str, typer.Option(help="How hosts reach the tenant's database: identity "
                                           "(DefaultAzureCredential) or key.")] = "identity",
    data_dir: DataDir = Path(".waymark"),
    as_json: AsJson = False,
) -> None:
    """Record what infra/tenant.bicep provisioned as the tenant's configuration: a new tenant gets its key (printed
    once), an existing one its configuration replaced."""
    if auth not in ("identity", "key"):
        fail(f"--auth is identity or key, not {auth!r}", 2)
    if outputs == "-":
        text = sys.stdin.read()
    elif outputs.lstrip().startswith("{"):
        text = outputs
    else:
        try:
            text = Path(outputs).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            fail(f"cannot read {outputs}: {e}", 2)
    _record_outputs(tenant_id, text, auth=auth, data_dir=data_dir, as_json=as_json)
