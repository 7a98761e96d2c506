"""`waymark tenants onboard`: create a tenant's storage (a SQLite file, or its own database in a Cosmos DB account)
and record it in the tenant registry of a local data directory, not through a server; print its key once.

With `--azure` the storage is provisioned by infra/tenant.bicep instead: onboard_bicep.py prints or runs the
deployment and records its outputs; with `--azure --app-url`, onboard_azure.py deploys it and registers the tenant
through the deployed app's API.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli.local_registry import (
    DataDir,
    onboarding_errors,
    onboarding_failed,
    open_local_registry,
    show_onboarded,
)
from engine.cli.onboard_bicep import onboard_with_bicep, tenant_template
from engine.cli.remote import AsJson, fail

if TYPE_CHECKING:
    from engine.tenants import SqliteTenantRegistry, TenantRecord

__all__ = ["tenants_onboard"]


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
    _check_tenant_id(tenant_id)
    if azure and app_url:
        _onboard_through_app(tenant_id, resource_group=resource_group, cosmos_account=cosmos_account,
                             app_url=app_url, database=database, create_event_grid_topic=create_event_grid_topic,
                             app_principal_id=app_principal_id, admin_key=admin_key, print_plan=print_plan,
                             what_if=what_if, rotate_key=rotate_key, as_json=as_json)
        return
    if azure:
        onboard_with_bicep(tenant_id, resource_group=resource_group, cosmos_account=cosmos_account,
                           database=database, create_event_grid_topic=create_event_grid_topic,
                           app_principal_id=app_principal_id, run=run, data_dir=data_dir, as_json=as_json)
        return
    if run:
        fail("--run goes with --azure", 2)
    store = store or ("cosmos" if cosmos_endpoint else "sqlite")
    if store == "sqlite":
        _onboard_sqlite(tenant_id, data_dir=data_dir, event_grid_topic=event_grid_topic, as_json=as_json)
        return
    if store != "cosmos":
        fail(f"--store is cosmos or sqlite, not {store!r}", 2)
    _onboard_cosmos(tenant_id, cosmos_endpoint=cosmos_endpoint, cosmos_key=cosmos_key, identity=identity,
                    database=database, create=create, verify=verify, event_grid_topic=event_grid_topic,
                    data_dir=data_dir, as_json=as_json)


def _check_tenant_id(tenant_id: str) -> None:
    from engine.tenants import check_tenant_id

    try:
        check_tenant_id(tenant_id)
    except onboarding_errors() as e:
        onboarding_failed(e)


def _onboard_through_app(tenant_id: str, *, resource_group: str | None, cosmos_account: str | None, app_url: str,
                         database: str | None, create_event_grid_topic: bool, app_principal_id: str | None,
                         admin_key: str | None, print_plan: bool, what_if: bool, rotate_key: bool,
                         as_json: bool) -> None:
    from engine.cli.onboard_azure import AzureOnboarding, onboard_on_azure

    if not resource_group or not cosmos_account:
        fail("--azure needs --resource-group and --cosmos-account", 2)
    onboarding = AzureOnboarding(tenant_id, resource_group, cosmos_account, app_url, database=database,
                                 create_event_grid_topic=create_event_grid_topic,
                                 app_principal_id=app_principal_id, template=tenant_template())
    onboard_on_azure(onboarding, admin_key=admin_key, print_plan=print_plan, what_if=what_if,
                     rotate_key=rotate_key, as_json=as_json)


def _onboard_sqlite(tenant_id: str, *, data_dir: Path, event_grid_topic: str | None, as_json: bool) -> None:
    registry = open_local_registry(data_dir)
    try:
        record, key = _create_sqlite_tenant(registry, tenant_id, data_dir, event_grid_topic)
    except onboarding_errors() as e:
        onboarding_failed(e)
    finally:
        registry.close()
    show_onboarded(record, key, as_json, f"onboarded: SQLite, in {data_dir / 'tenants'}")


def _create_sqlite_tenant(registry: SqliteTenantRegistry, tenant_id: str, data_dir: Path,
                          event_grid_topic: str | None) -> tuple[TenantRecord, str]:
    from engine.stores.sqlite import SqliteEventStore
    from engine.tenants.base import refuse_existing

    refuse_existing(registry, tenant_id)
    store = SqliteEventStore(data_dir)
    try:
        store.ping(tenant_id)  # creates the tenant's file
    finally:
        store.close()
    config: dict[str, Any] = {"store": "sqlite"}
    if event_grid_topic:
        config["eventGridTopicEndpoint"] = event_grid_topic
    return registry.create(tenant_id, config=config)


def _onboard_cosmos(tenant_id: str, *, cosmos_endpoint: str | None, cosmos_key: str | None, identity: bool,
                    database: str | None, create: bool, verify: bool, event_grid_topic: str | None,
                    data_dir: Path, as_json: bool) -> None:
    if not cosmos_endpoint:
        fail("--store cosmos needs --cosmos-endpoint (or WAYMARK_COSMOS_ENDPOINT)", 2)
    if not identity and not cosmos_key:
        fail("give --cosmos-key (or WAYMARK_COSMOS_KEY) or --identity (DefaultAzureCredential)", 2)
    from engine.tenants.onboarding import onboard_cosmos_tenant

    credential = None
    if identity:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    registry = open_local_registry(data_dir)
    try:
        with _unverified_tls(not verify):
            record, key = onboard_cosmos_tenant(registry, tenant_id, endpoint=cosmos_endpoint,
                                                key=None if identity else cosmos_key, credential=credential,
                                                database=database, create=create, verify=verify,
                                                event_grid_topic_endpoint=event_grid_topic)
    except onboarding_errors() as e:
        onboarding_failed(e)
    finally:
        registry.close()
    done = "created or found" if create else "not checked (--no-create)"
    show_onboarded(record, key, as_json, f"onboarded: Cosmos DB database [bold]{record.config['database']}[/] "
                                         f"at {cosmos_endpoint} ({done}), auth {record.config['auth']}")


@contextlib.contextmanager
def _unverified_tls(active: bool) -> Iterator[None]:
    """Silence urllib3's warning per request while TLS is deliberately not verified (a local cosmosdb-server)."""
    with warnings.catch_warnings():
        if active:
            from urllib3.exceptions import InsecureRequestWarning

            warnings.simplefilter("ignore", InsecureRequestWarning)
        yield
