"""The tenant registry of a local data directory (the one `waymark serve` reads; with the same WAYMARK_SECRET if it
is set), as `tenants onboard` and `tenants record-outputs` open it, and how they report onboarding."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from engine.cli import render
from engine.cli.remote import fail

if TYPE_CHECKING:
    from engine.tenants import SqliteTenantRegistry, TenantRecord

__all__ = ["DataDir", "onboarding_errors", "onboarding_failed", "open_local_registry", "show_onboarded"]

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="WAYMARK_DATA_DIR",
                                       help="The data directory whose tenant registry records the tenant.")]


def open_local_registry(data_dir: Path) -> SqliteTenantRegistry:
    """The tenant registry of a data directory, keys hashed with its secret (WAYMARK_SECRET, else its file)."""
    from pydantic import ValidationError

    from engine.domain import StoreUnavailable
    from engine.hosting.local import open_tenants
    from engine.hosting.settings import Settings

    try:
        settings = Settings(data_dir=data_dir, store="sqlite")  # only the data directory and the secret matter
    except ValidationError as e:
        fail(f"settings: {e}", 2)
    try:
        return open_tenants(settings)
    except (StoreUnavailable, OSError) as e:
        fail(f"cannot open the tenant registry in {data_dir}: {e}", 2)


def show_onboarded(record: TenantRecord, key: str | None, as_json: bool, what: str) -> None:
    if as_json:
        render.print_json({"id": record.id, "key": key, "config": record.to_public()["config"]})  # secrets "***"
        return
    render.console.print(f"[green]✓[/] tenant [bold]{record.id}[/] {what}", highlight=False, soft_wrap=True)
    if key is not None:
        render.console.print("its key (shown once):", highlight=False)
        typer.echo(key)


def onboarding_errors() -> tuple[type[BaseException], ...]:
    from engine.domain import StoreUnavailable
    from engine.tenants import InvalidTenantId, TenantAlreadyExists

    return TenantAlreadyExists, InvalidTenantId, StoreUnavailable, ValueError


def onboarding_failed(error: BaseException) -> NoReturn:
    from engine.domain import StoreUnavailable
    from engine.tenants import InvalidTenantId

    fail(str(error), 2 if isinstance(error, StoreUnavailable | InvalidTenantId) else 1)
