"""`waymark` commands that talk to a running server over HTTP (httpx).

Every command takes `--url` (WAYMARK_URL, default http://127.0.0.1:8080), `--key` (WAYMARK_KEY), `--tenant`
(WAYMARK_TENANT, default demo) and `--json`. An error answer (problem+json) is printed as `title: detail`
(with each listed problem) and exits 1; a server that cannot be reached exits 2.

`instances show`/`history` read a local data directory instead when `--data-dir` is given, and
`workflows diagram` draws a local file when its argument is a file that exists.

`tenants onboard` and `tenants record-outputs` work on the tenant registry of a local data directory (the one
`waymark serve` reads; with the same WAYMARK_SECRET if it is set), not through a server: they create a tenant's
storage on Cosmos DB or SQLite, or record what infra/tenant.bicep provisioned.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from rich.table import Table

from engine.cli import render
from engine.cli.help import Cli

if TYPE_CHECKING:
    from engine.tenants import SqliteTenantRegistry, TenantRecord

__all__ = ["Remote", "register"]

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


def _fail(message: str, code: int) -> NoReturn:
    render.console.print(message, style="red", highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(code)


def _json_option(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        _fail(f"{name} is not JSON: {e}", 2)


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
            _fail(f"cannot connect to the Waymark server at {self.url}: is `waymark serve` running? "
                  "(set --url or WAYMARK_URL)", 2)
        except httpx.TimeoutException:
            _fail(f"the Waymark server at {self.url} did not answer in time", 2)
        except httpx.HTTPError as e:
            _fail(f"talking to {self.url} failed: {e}", 2)
        if response.status_code not in ok:
            _problem(response)
        return response


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
    _fail("\n".join(lines), 1)


def _headline(detail: str, errors: list[str]) -> str:
    """A problem's detail without the listed errors it repeats (an invalid definition's detail names each one,
    and each is printed on its own line below it)."""
    for error in errors:
        detail = detail.replace(error, "")
    return detail.rstrip(" :;,") if errors else detail


def _read_file(path: Path) -> Any:
    from engine.domain import load_json

    try:
        return load_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"cannot read {path}: {e}", 2)
    except ValueError as e:
        _fail(f"{path} is not JSON: {e}", 1)


def _show(value: Any, as_json: bool, people: Any = None) -> None:
    if as_json or people is None:
        render.print_json(value)
    else:
        people(value)


# ---------------------------------------------------------------------------------------------- tenants

def tenants_create(tenant_id: str, url: Url = DEFAULT_URL, key: AdminKey = None, as_json: AsJson = False,
                   config: Annotated[str | None, typer.Option(help="Tenant configuration (JSON object).")] = None,
                   ) -> None:
    """Onboard a tenant (admin key); prints its key, shown this once."""
    body: dict[str, Any] = {"id": tenant_id}
    if config is not None:
        body["config"] = _json_option(config, "--config")
    with Remote(url, key) as remote:
        created = remote.call("POST", "/tenants", json=body, ok=(201,)).json()
    if as_json:
        render.print_json(created)
    else:
        render.console.print(f"[green]✓[/] tenant [bold]{created['id']}[/] created; its key (shown once):",
                             highlight=False)
        typer.echo(created["key"])


def tenants_show(tenant_id: str, url: Url = DEFAULT_URL, key: Key = None) -> None:
    """A tenant (its own key or the admin key)."""
    with Remote(url, key, tenant_id) as remote:
        render.print_json(remote.call("GET", remote.path()).json())


def tenants_rotate_key(tenant_id: str, url: Url = DEFAULT_URL, key: Key = None, as_json: AsJson = False) -> None:
    """Replace a tenant's key; prints the new key, shown this once. The old key stops working."""
    with Remote(url, key, tenant_id) as remote:
        rotated = remote.call("POST", remote.path("keys")).json()
    if as_json:
        render.print_json(rotated)
    else:
        typer.echo(rotated["key"])


ROOT = Path(__file__).resolve().parents[2]
TENANT_TEMPLATE = "infra/tenant.bicep"
DataDir = Annotated[Path, typer.Option("--data-dir", envvar="WAYMARK_DATA_DIR",
                                       help="The data directory whose tenant registry records the tenant.")]


def _local_registry(data_dir: Path) -> SqliteTenantRegistry:
    """The tenant registry of a data directory, keys hashed with its secret (WAYMARK_SECRET, else its file)."""
    from pydantic import ValidationError

    from engine.domain import StoreUnavailable
    from engine.hosting.local import open_tenants
    from engine.hosting.settings import Settings

    try:
        settings = Settings(data_dir=data_dir, store="sqlite")  # only the data directory and the secret matter
    except ValidationError as e:
        _fail(f"settings: {e}", 2)
    try:
        return open_tenants(settings)
    except (StoreUnavailable, OSError) as e:
        _fail(f"cannot open the tenant registry in {data_dir}: {e}", 2)


def _show_onboarded(record: TenantRecord, key: str | None, as_json: bool, what: str) -> None:
    if as_json:
        render.print_json({"id": record.id, "key": key, "config": record.to_public()["config"]})  # secrets "***"
        return
    render.console.print(f"[green]✓[/] tenant [bold]{record.id}[/] {what}", highlight=False, soft_wrap=True)
    if key is not None:
        render.console.print("its key (shown once):", highlight=False)
        typer.echo(key)


def _onboarding_errors() -> tuple[type[BaseException], ...]:
    from engine.domain import StoreUnavailable
    from engine.tenants import InvalidTenantId, TenantAlreadyExists

    return TenantAlreadyExists, InvalidTenantId, StoreUnavailable, ValueError


def _onboarding_failed(error: BaseException) -> NoReturn:
    from engine.domain import StoreUnavailable
    from engine.tenants import InvalidTenantId

    _fail(str(error), 2 if isinstance(error, StoreUnavailable | InvalidTenantId) else 1)


def tenants_onboard(
    tenant_id: str,
    store: Annotated[str | None, typer.Option(envvar="WAYMARK_STORE", help="Where the tenant's data lives: cosmos "
                                                                           "or sqlite [default: cosmos with a "
                                                                           "Cosmos endpoint, else sqlite].")]
    = None,
    cosmos_endpoint: Annotated[str | None, typer.Option("--cosmos-endpoint", envvar="WAYMARK_COSMOS_ENDPOINT",
                                                        help="Cosmos DB account endpoint.")] = None,
    cosmos_key: Annotated[str | None, typer.Option("--cosmos-key", envvar="WAYMARK_COSMOS_KEY",
                                                   help="Account key (key auth; its hosts are given the key, the "
                                                        "registry never stores it).")] = None,
    identity: Annotated[bool, typer.Option("--identity", help="Reach Cosmos with DefaultAzureCredential (auth "
                                                              "`identity`), not a key.")] = False,
    database: Annotated[str | None, typer.Option(help="The tenant's database (default: waymark-{tenant}).")]
    = None,
    event_grid_topic: Annotated[str | None, typer.Option("--event-grid-topic", help="The tenant's Event Grid "
                                                                                    "topic endpoint (recorded).")]
    = None,
    create: Annotated[bool, typer.Option("--create/--no-create", help="Create the database and containers if "
                                                                      "missing (data plane; a key, or an identity "
                                                                      "allowed to).")] = True,
    verify: Annotated[bool, typer.Option("--cosmos-verify/--cosmos-no-verify", envvar="WAYMARK_COSMOS_VERIFY",
                                         help="Verify the endpoint's TLS certificate (no: a local "
                                              "cosmosdb-server only).")] = True,
    azure: Annotated[bool, typer.Option("--azure", help="Provision with infra/tenant.bicep instead (Entra ID "
                                                        "data-plane roles cannot create databases): print the "
                                                        "deployment command, or run it with --run.")] = False,
    resource_group: Annotated[str | None, typer.Option("--resource-group", help="--azure: the resource group "
                                                                                "of the platform.")] = None,
    cosmos_account: Annotated[str | None, typer.Option("--cosmos-account", help="--azure: the platform's Cosmos "
                                                                                "DB account name.")] = None,
    create_event_grid_topic: Annotated[bool, typer.Option("--create-event-grid-topic", help="--azure: give the "
                                                                                            "tenant an Event Grid "
                                                                                            "topic.")] = False,
    app_principal_id: Annotated[str | None, typer.Option("--app-principal-id", help="--azure: the Function "
                                                                                    "app's identity, given "
                                                                                    "EventGrid Data Sender on the "
                                                                                    "topic.")] = None,
    run: Annotated[bool, typer.Option("--run", help="--azure without --app-url: run the deployment with `az` and "
                                                    "record its outputs in the data directory's registry.")] = False,
    app_url: Annotated[str | None, typer.Option("--app-url", envvar="WAYMARK_APP_URL",
                                                help="--azure: the deployed Function app; the tenant is deployed "
                                                     "with `az` and registered through its API, in one step.")]
    = None,
    print_plan: Annotated[bool, typer.Option("--print", help="--azure --app-url: show the exact `az` command and "
                                                             "HTTP calls; do nothing.")] = False,
    what_if: Annotated[bool, typer.Option("--what-if", help="--azure --app-url: run `az deployment group what-if` "
                                                            "(changes nothing).")] = False,
    rotate_key: Annotated[bool, typer.Option("--rotate-key", help="--azure --app-url: when the tenant is "
                                                                  "onboarded already, issue it a new key (a lost "
                                                                  "one stops working).")] = False,
    admin_key: Annotated[str | None, typer.Option("--key", envvar="WAYMARK_ADMIN_KEY",
                                                  help="--azure --app-url: the app's admin key.")] = None,
    data_dir: DataDir = Path(".waymark"),
    as_json: AsJson = False,
) -> None:
    """Onboard a tenant into a data directory's registry: create its storage, record where it is, print its key
    once. `--store cosmos`: its own database in the account (`--azure`: provisioned by infra/tenant.bicep)."""
    from engine.tenants import check_tenant_id

    errors = _onboarding_errors()
    try:
        check_tenant_id(tenant_id)
    except errors as e:
        _onboarding_failed(e)
    if azure and app_url:
        from engine.cli.onboard_azure import AzureOnboarding, onboard_on_azure

        if not resource_group or not cosmos_account:
            _fail("--azure needs --resource-group and --cosmos-account", 2)
        template = TENANT_TEMPLATE if Path(TENANT_TEMPLATE).is_file() else str(ROOT / TENANT_TEMPLATE)
        onboarding = AzureOnboarding(tenant_id, resource_group, cosmos_account, app_url, database=database,
                                     create_event_grid_topic=create_event_grid_topic,
                                     app_principal_id=app_principal_id, template=template)
        onboard_on_azure(onboarding, admin_key=admin_key, print_plan=print_plan, what_if=what_if,
                         rotate_key=rotate_key, as_json=as_json)
        return
    if azure:
        _onboard_azure(tenant_id, resource_group=resource_group, cosmos_account=cosmos_account, database=database,
                       create_event_grid_topic=create_event_grid_topic, app_principal_id=app_principal_id,
                       run=run, data_dir=data_dir, as_json=as_json)
        return
    if run:
        _fail("--run goes with --azure", 2)
    store = store or ("cosmos" if cosmos_endpoint else "sqlite")
    if store == "sqlite":
        registry = _local_registry(data_dir)
        try:
            record, key = _onboard_sqlite(registry, tenant_id, data_dir, event_grid_topic)
        except errors as e:
            _onboarding_failed(e)
        finally:
            registry.close()
        _show_onboarded(record, key, as_json, f"onboarded: SQLite, in {data_dir / 'tenants'}")
        return
    if store != "cosmos":
        _fail(f"--store is cosmos or sqlite, not {store!r}", 2)
    if not cosmos_endpoint:
        _fail("--store cosmos needs --cosmos-endpoint (or WAYMARK_COSMOS_ENDPOINT)", 2)
    if not identity and not cosmos_key:
        _fail("give --cosmos-key (or WAYMARK_COSMOS_KEY) or --identity (DefaultAzureCredential)", 2)
    from engine.tenants.onboarding import onboard_cosmos_tenant

    credential = None
    if identity:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    registry = _local_registry(data_dir)
    try:
        with _unverified_tls(not verify):
            record, key = onboard_cosmos_tenant(registry, tenant_id, endpoint=cosmos_endpoint,
                                                key=None if identity else cosmos_key, credential=credential,
                                                database=database, create=create, verify=verify,
                                                event_grid_topic_endpoint=event_grid_topic)
    except errors as e:
        _onboarding_failed(e)
    finally:
        registry.close()
    done = "created or found" if create else "not checked (--no-create)"
    _show_onboarded(record, key, as_json, f"onboarded: Cosmos DB database [bold]{record.config['database']}[/] "
                                          f"at {cosmos_endpoint} ({done}), auth {record.config['auth']}")


def _onboard_sqlite(registry: SqliteTenantRegistry, tenant_id: str, data_dir: Path,
                    event_grid_topic: str | None) -> tuple[TenantRecord, str]:
    from engine.domain import TenantNotFound
    from engine.stores.sqlite import SqliteEventStore
    from engine.tenants import TenantAlreadyExists

    try:
        registry.get(tenant_id)
    except TenantNotFound:
        pass
    else:
        raise TenantAlreadyExists(tenant_id)
    store = SqliteEventStore(data_dir)
    try:
        store.ping(tenant_id)  # creates the tenant's file
    finally:
        store.close()
    config: dict[str, Any] = {"store": "sqlite"}
    if event_grid_topic:
        config["eventGridTopicEndpoint"] = event_grid_topic
    return registry.create(tenant_id, config=config)


@contextlib.contextmanager
def _unverified_tls(active: bool) -> Iterator[None]:
    """Silence urllib3's warning per request while TLS is deliberately not verified (a local cosmosdb-server)."""
    with warnings.catch_warnings():
        if active:
            from urllib3.exceptions import InsecureRequestWarning

            warnings.simplefilter("ignore", InsecureRequestWarning)
        yield


def _onboard_azure(tenant_id: str, *, resource_group: str | None, cosmos_account: str | None,
                   database: str | None, create_event_grid_topic: bool, app_principal_id: str | None, run: bool,
                   data_dir: Path, as_json: bool) -> None:
    from engine.tenants.onboarding import tenant_bicep_command

    if not resource_group or not cosmos_account:
        _fail("--azure needs --resource-group and --cosmos-account", 2)
    template = TENANT_TEMPLATE if Path(TENANT_TEMPLATE).is_file() else str(ROOT / TENANT_TEMPLATE)
    command = tenant_bicep_command(tenant_id, resource_group, cosmos_account=cosmos_account, database=database,
                                   create_event_grid_topic=create_event_grid_topic,
                                   app_principal_id=app_principal_id, template=template)
    if not run:
        if as_json:
            render.print_json({"id": tenant_id, "command": command})
            return
        render.console.print(f"Provision tenant [bold]{tenant_id}[/] with infra/tenant.bicep (it prints the "
                             "deployment's outputs):", highlight=False, soft_wrap=True)
        typer.echo(command)
        render.console.print(f"then record them: waymark tenants record-outputs {tenant_id} --outputs "
                             f"OUTPUTS.json --data-dir {data_dir}   (or run this with --run)",
                             highlight=False, soft_wrap=True, markup=False)
        return
    import shlex

    az = shutil.which("az")
    if az is None:
        _fail("`az` (the Azure CLI) is not installed here: run the command yourself:\n" + command, 2)
    words = shlex.split(command)
    if not as_json:
        render.console.print(f"running: {command}", highlight=False, soft_wrap=True, markup=False)
    try:
        done = subprocess.run([az, *words[1:]], capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        _fail(f"the deployment did not run: {e}", 2)
    if done.returncode != 0:
        _fail(f"the deployment failed (az exit {done.returncode}):\n{done.stderr.strip() or done.stdout.strip()}",
              1)
    _record_outputs(tenant_id, done.stdout, auth="identity", data_dir=data_dir, as_json=as_json)


def _record_outputs(tenant_id: str, outputs: str, *, auth: str, data_dir: Path, as_json: bool) -> None:
    from engine.tenants.onboarding import record_bicep_outputs

    registry = _local_registry(data_dir)
    try:
        record, key = record_bicep_outputs(registry, tenant_id, outputs, auth=auth)
    except json.JSONDecodeError as e:
        _fail(f"the outputs are not JSON: {e}", 1)
    except _onboarding_errors() as e:
        _onboarding_failed(e)
    finally:
        registry.close()
    what = "onboarded" if key is not None else "configuration replaced (its key is unchanged)"
    _show_onboarded(record, key, as_json, f"{what}: Cosmos DB database [bold]{record.config.get('database')}[/] "
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
        _fail(f"--auth is identity or key, not {auth!r}", 2)
    if outputs == "-":
        text = sys.stdin.read()
    elif outputs.lstrip().startswith("{"):
        text = outputs
    else:
        try:
            text = Path(outputs).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            _fail(f"cannot read {outputs}: {e}", 2)
    _record_outputs(tenant_id, text, auth=auth, data_dir=data_dir, as_json=as_json)


# ---------------------------------------------------------------------------------------------- workflows

def workflows_put(file: Path, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                  as_json: AsJson = False,
                  workflow_id: Annotated[str | None, typer.Option("--id", help="Workflow id (default: the "
                                                                              "file's `id`).")] = None) -> None:
    """Upload a definition: a new version (the server lists every problem of an invalid one)."""
    document = _read_file(file)
    name = workflow_id or (document.get("id") if isinstance(document, dict) else None)
    if not isinstance(name, str) or not name:
        _fail(f"{file} has no `id`; give one with --id", 2)
    with Remote(url, key, tenant) as remote:
        response = remote.call("PUT", remote.path("workflows", name), json=document, ok=(200, 201))
    stored = response.json()
    if as_json:
        render.print_json(stored)
    else:
        verb = "created" if response.status_code == 201 else "updated"
        render.console.print(f"[green]✓[/] workflow [bold]{stored['id']}[/] {verb}: version {stored['version']}",
                             highlight=False)


def workflows_get(workflow_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                  version: Annotated[int | None, typer.Option(help="Version (default: the latest).")] = None) -> None:
    """Print a stored definition (JSON, with its version)."""
    with Remote(url, key, tenant) as remote:
        params = {"version": version} if version is not None else {}
        render.print_json(remote.call("GET", remote.path("workflows", workflow_id), params=params).json())


def workflows_list(url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False) -> None:
    """Every workflow of the tenant with its latest version."""
    with Remote(url, key, tenant) as remote:
        listed = remote.call("GET", remote.path("workflows")).json()
    if as_json:
        render.print_json(listed)
        return
    table = Table("workflow", "latest version")
    for item in listed["items"]:
        table.add_row(item["id"], str(item["version"]))
    render.console.print(table)


def workflows_diagram(file_or_id: Annotated[str, typer.Argument(metavar="FILE_OR_ID",
                                                                help="A definition file, or a workflow id on the "
                                                                     "server.")],
                      state: Annotated[str | None, typer.Option(help="State to highlight.")] = None,
                      instance: Annotated[str | None, typer.Option(help="Highlight this instance's state "
                                                                        "(server).")] = None,
                      version: Annotated[int | None, typer.Option(help="Version (server).")] = None,
                      url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo") -> None:
    """Print a definition as a Mermaid stateDiagram-v2: from a local FILE, or fetched from the server by id."""
    path = Path(file_or_id)
    if path.is_file():
        from engine.domain import InvalidDefinition, default_registry, mermaid
        from engine.service.definitions import validate_definition

        try:
            definition = validate_definition(_read_file(path), default_registry())
        except InvalidDefinition as e:
            _fail(str(e), 1)
        typer.echo(mermaid(definition, highlight=state), nl=False)
        return
    params: dict[str, Any] = {}
    if instance is not None:
        params["instance"] = instance
    if version is not None:
        params["version"] = version
    with Remote(url, key, tenant) as remote:
        text = remote.call("GET", remote.path("workflows", file_or_id, "diagram"), params=params).text
    if state is not None and instance is None:  # drawn here as the local diagram draws it
        node = "".join(c if c.isalnum() or c == "_" else "_" for c in state)
        text += f"    classDef current fill:#f96,stroke:#333,stroke-width:2px\n    class {node} current\n"
    typer.echo(text, nl=False)


# ---------------------------------------------------------------------------------------------- instances

def instances_create(workflow: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                     as_json: AsJson = False,
                     instance_id: Annotated[str | None, typer.Option("--id", help="Instance id (default: "
                                                                                  "generated).")] = None,
                     context: Annotated[str | None, typer.Option(help="Initial context (JSON object).")] = None,
                     interest: Annotated[list[str] | None, typer.Option(help="A subject it listens to "
                                                                             "(repeatable).")] = None,
                     trigger_id: Annotated[str | None, typer.Option("--trigger-id", help="Idempotency key.")] = None,
                     wait: Wait = 0) -> None:
    """Create an instance of a workflow (queued; --wait N to see it created).

    Exit status: 0 created (or accepted, without --wait), 5 it faulted, 6 not processed within --wait (still
    queued); 1 an error answer, 2 no server."""
    body: dict[str, Any] = {"workflowId": workflow}
    if instance_id is not None:
        body["id"] = instance_id
    if context is not None:
        body["context"] = _json_option(context, "--context")
    if interest:
        body["interests"] = interest
    if trigger_id is not None:
        body["triggerId"] = trigger_id
    with Remote(url, key, tenant) as remote:
        response = remote.call("POST", remote.path("instances"), json=body, ok=(201, 202), wait=wait)
    result = response.json()
    if as_json:
        render.print_json(result)
    elif response.status_code == 201:
        render.instance_panel(result)
    else:
        render.console.print(f"accepted: instance [bold]{result['instanceId']}[/] (trigger {result['triggerId']})"
                             + (f"; not processed within {wait:g} s" if wait else ""), highlight=False)
    if response.status_code == 201 and result.get("status") == "Faulted":
        raise typer.Exit(EXIT_CODES["faulted"])
    if response.status_code == 202 and wait:
        raise typer.Exit(NOT_READY)


def instances_list(url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False,
                   status: Annotated[str | None, typer.Option(help="Waiting, Complete, Faulted, Terminated.")] = None,
                   workflow: Annotated[str | None, typer.Option(help="Workflow id.")] = None,
                   state: Annotated[str | None, typer.Option(help="Current state.")] = None,
                   limit: Annotated[int, typer.Option(min=1, max=1000, help="Page size.")] = 100,
                   continuation: Annotated[str | None, typer.Option(help="Token of the next page.")] = None,
                   every: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False) -> None:
    """Instances matching every filter, by id, a page at a time (--all for every page)."""
    params: dict[str, Any] = {"limit": limit}
    for name, value in (("status", status), ("workflowId", workflow), ("state", state),
                        ("continuation", continuation)):
        if value is not None:
            params[name] = value
    items: list[dict[str, Any]] = []
    with Remote(url, key, tenant) as remote:
        while True:
            page = remote.call("GET", remote.path("instances"), params=params).json()
            items += page["items"]
            if not every or page["continuation"] is None:
                break
            params["continuation"] = page["continuation"]
    next_page = None if every else page["continuation"]
    if as_json:
        render.print_json({"items": items, "continuation": next_page})
        return
    render.instances_table(items)
    if next_page:
        render.console.print(f"more: --continuation {next_page}", highlight=False)


def instances_show(instance_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                   as_json: AsJson = False, data_dir: LocalDir = None) -> None:
    """Show one instance: state, status, context and fault."""
    if data_dir is not None:
        from engine.domain import NotFound

        try:
            instance = _local_engine(data_dir).events.load(tenant, instance_id).to_dict()
        except NotFound as e:
            _fail(str(e), 1)
    else:
        with Remote(url, key, tenant) as remote:
            instance = remote.call("GET", remote.path("instances", instance_id)).json()
    _show(instance, as_json, render.instance_panel)


def instances_history(instance_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                      as_json: AsJson = False, data_dir: LocalDir = None,
                      wide: Annotated[bool, typer.Option("--wide", help="Every value whole (long ids, times to the "
                                                                        "microsecond), wrapped; by default a row "
                                                                        "is one line, cut to the terminal.")]
                      = False) -> None:
    """The instance's events, in order: every trigger and what it did."""
    if data_dir is not None:
        events = [e.to_dict() for e in _local_engine(data_dir).events.read(tenant, instance_id)]
        if not events:
            _fail(f"instance {instance_id!r} does not exist in tenant {tenant!r}", 1)
    else:
        events = []
        params: dict[str, Any] = {"limit": 1000}
        with Remote(url, key, tenant) as remote:
            while True:
                page = remote.call("GET", remote.path("instances", instance_id, "events"), params=params).json()
                events += page["items"]
                if page["continuation"] is None:
                    break
                params["continuation"] = page["continuation"]
    _show({"items": events}, as_json, lambda value: render.history_table(value["items"], wide=wide))


def _local_engine(data_dir: Path) -> Any:
    from engine.hosting.runtime import sqlite_engine

    if not data_dir.is_dir():
        _fail(f"no data directory at {data_dir}", 2)
    return sqlite_engine(data_dir)


# ---------------------------------------------------------------------------------------------- triggers

def trigger(instance_id: str, topic: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
            as_json: AsJson = False,
            content: Annotated[str | None, typer.Option(help="Trigger content (JSON).")] = None,
            trigger_id: Annotated[str | None, typer.Option("--id", help="Idempotency key (default: "
                                                                        "generated).")] = None,
            wait: Wait = 0,
            expected_version: Annotated[int | None, typer.Option(
                "--expected-version", min=0, help="Apply only while the instance is at this version (sent as "
                                                  "If-Match); else it is rejected (exit 1 with --wait).")] = None,
            not_before: Annotated[str | None, typer.Option(
                "--not-before", help="Send it at this time (RFC 3339), not before: scheduled, listed by "
                                     "`instances scheduled`, cancelled by `instances cancel`.")] = None,
            delay: Annotated[str | None, typer.Option(
                "--delay", help="Send it after this ISO 8601 duration (PT1H, P3D): scheduled, like "
                                "--not-before.")] = None,
            ) -> None:
    """Send a trigger to an instance (queued; --wait N to see what it did).

    Exit status: 0 applied (or accepted, without --wait), 3 ignored, 4 rejected, 5 faulted, 6 not processed
    within --wait (still queued); 1 an error answer, 2 no server."""
    body: dict[str, Any] = {"topic": topic}
    if expected_version is not None:
        body["expectedVersion"] = expected_version
    if content is not None:
        body["content"] = _json_option(content, "--content")
    if trigger_id is not None:
        body["id"] = trigger_id
    for name, value in (("notBefore", not_before), ("delay", delay)):
        if value is not None:
            body[name] = value
    with Remote(url, key, tenant) as remote:
        response = remote.call("POST", remote.path("instances", instance_id, "triggers"), json=body,
                               ok=(200, 202), wait=wait)
    result = response.json()
    if as_json:
        render.print_json(result)
    elif result.get("scheduled"):
        render.console.print(f"scheduled: trigger {result['triggerId']} at {result['notBefore']}", highlight=False,
                             markup=False)
        return
    elif response.status_code == 200:
        render.outcome_line(result)
        render.instance_panel(result["instance"])
    else:
        render.console.print(f"accepted: trigger {result['triggerId']}"
                             + (f"; not processed within {wait:g} s" if wait else ""), highlight=False)
    if response.status_code == 200 and EXIT_CODES.get(str(result.get("outcome"))):
        raise typer.Exit(EXIT_CODES[str(result.get("outcome"))])
    if response.status_code == 202 and wait:
        raise typer.Exit(NOT_READY)


def broadcast(topic: str, subject: Annotated[list[str], typer.Option(help="Subject (repeatable); every instance "
                                                                          "interested in one gets the trigger.")],
              url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False,
              content: Annotated[str | None, typer.Option(help="Trigger content (JSON).")] = None,
              trigger_id: Annotated[str | None, typer.Option("--id", help="Idempotency key.")] = None) -> None:
    """Send a trigger to every instance interested in one of the subjects (queued)."""
    body: dict[str, Any] = {"topic": topic, "subjects": subject}
    if content is not None:
        body["content"] = _json_option(content, "--content")
    if trigger_id is not None:
        body["id"] = trigger_id
    with Remote(url, key, tenant) as remote:
        result = remote.call("POST", remote.path("triggers"), json=body, ok=(202,)).json()
    if as_json:
        render.print_json(result)
    else:
        render.console.print(f"accepted: broadcast trigger {result['triggerId']} to {', '.join(subject)}",
                             highlight=False)


def register(app: typer.Typer, workflows_app: typer.Typer, instances_app: typer.Typer) -> None:
    """Add the remote commands to the `waymark` app and its `workflows` and `instances` groups."""
    tenants_app = Cli(help="Onboard tenants (on a server, or into a data "
                                                         "directory with their storage) and rotate their keys.")
    tenants_app.command("create")(tenants_create)
    tenants_app.command("onboard")(tenants_onboard)
    tenants_app.command("record-outputs")(tenants_record_outputs)
    tenants_app.command("show")(tenants_show)
    tenants_app.command("rotate-key")(tenants_rotate_key)
    app.add_typer(tenants_app, name="tenants")
    workflows_app.command("put")(workflows_put)
    workflows_app.command("get")(workflows_get)
    workflows_app.command("list")(workflows_list)
    workflows_app.command("diagram")(workflows_diagram)
    instances_app.command("create")(instances_create)
    instances_app.command("list")(instances_list)
    instances_app.command("show")(instances_show)
    instances_app.command("history")(instances_history)
    app.command("trigger")(trigger)
    app.command("broadcast")(broadcast)
