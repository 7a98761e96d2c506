"""The tenant registry (memory, SQLite and Cosmos on cosmosdb-server: one suite), key hashing, the server secret,
settings, Prefer parsing."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.api.limits import preferred_wait
from engine.domain import StoreUnavailable, TenantNotFound
from engine.hosting.settings import Settings
from engine.tenants import (
    InvalidTenantId,
    KeyHasher,
    MemoryTenantRegistry,
    SqliteTenantRegistry,
    TenantAlreadyExists,
    TenantRegistry,
    read_or_create_secret,
)

SECRET = "unit-test-secret-0123456789abcdef"


@pytest.fixture(params=["memory", "sqlite", "cosmos"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TenantRegistry]:
    if request.param == "memory":
        yield MemoryTenantRegistry(secret=SECRET)
    elif request.param == "sqlite":
        sqlite = SqliteTenantRegistry(tmp_path / "tenants.db", secret=SECRET)
        yield sqlite
        sqlite.close()
    else:  # the session's cosmosdb-server, a platform database of this test's own
        from engine.tenants.cosmos import CosmosTenantRegistry

        silo = request.getfixturevalue("cosmos_silo")
        yield CosmosTenantRegistry(silo.client, secret=SECRET, database=f"{silo.prefix}-platform", create=True)


def test_create_issues_a_key_that_authenticates_and_is_not_stored(registry: TenantRegistry) -> None:
    record, key = registry.create("acme", config={"plan": "free"})
    assert key.startswith("wmk_") and len(key) > 40
    assert record.id == "acme" and record.config == {"plan": "free"} and record.created_at.endswith("Z")
    assert key not in record.key_hash and record.key_hash == KeyHasher(SECRET).hash(key)
    found = registry.authenticate(key)
    assert found is not None and found.id == "acme"
    assert registry.authenticate(key + "x") is None and registry.authenticate("") is None
    assert registry.get("acme") == record
    assert "key_hash" not in record.to_public() and key not in str(record.to_public())


def test_create_refuses_a_taken_or_invalid_id(registry: TenantRegistry) -> None:
    registry.create("acme")
    with pytest.raises(TenantAlreadyExists) as raised:
        registry.create("acme")
    assert "acme" in str(raised.value)
    for bad in ("A", "a", "-a", "a_b", "a" * 64, "a/b", "../x"):
        with pytest.raises(InvalidTenantId):
            registry.create(bad)
    with pytest.raises(TenantNotFound):
        registry.get("nobody")


def test_a_given_key_and_rotation(registry: TenantRegistry) -> None:
    registry.create("demo", key="a-chosen-demo-key-0123456789")
    assert registry.authenticate("a-chosen-demo-key-0123456789") is not None
    new = registry.rotate_key("demo")
    assert registry.authenticate("a-chosen-demo-key-0123456789") is None
    found = registry.authenticate(new)
    assert found is not None and found.id == "demo"
    assert registry.rotate_key("demo", key="another-chosen-key-0123456789") == "another-chosen-key-0123456789"
    with pytest.raises(TenantNotFound):
        registry.rotate_key("nobody")
    assert [record.id for record in registry.list()] == ["demo"]


def test_update_config_replaces_the_configuration_and_nothing_else(registry: TenantRegistry) -> None:
    record, key = registry.create("acme", config={"plan": "free"})
    config = {"store": "cosmos", "cosmosEndpoint": "https://acct.documents.azure.com:443/", "database": "db-acme",
              "auth": "identity", "nested": {"list": [1, 2]}}
    updated = registry.update_config("acme", config)
    assert updated.config == config and updated.id == "acme"
    assert (updated.key_hash, updated.created_at) == (record.key_hash, record.created_at)
    assert registry.get("acme") == updated
    found = registry.authenticate(key)  # the key still works, and the record it finds is the new one
    assert found is not None and found.config == config
    config["database"] = "changed after the call"  # the registry kept its own copy
    assert registry.get("acme").config["database"] == "db-acme"
    assert registry.update_config("acme", {}).config == {}
    with pytest.raises(TenantNotFound):
        registry.update_config("nobody", {"store": "sqlite"})


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_defaults_configure_a_tenant_that_names_no_store(kind: str, tmp_path: Path) -> None:
    def defaults(tenant: str) -> dict[str, object]:
        return {"store": "cosmos", "database": f"waymark-{tenant}", "auth": "key"}

    registry: TenantRegistry = (MemoryTenantRegistry(secret=SECRET, defaults=defaults) if kind == "memory"
                                else SqliteTenantRegistry(tmp_path / "tenants.db", secret=SECRET, defaults=defaults))
    assert registry.create("acme")[0].config == {"store": "cosmos", "database": "waymark-acme", "auth": "key"}
    assert registry.create("beta", config={"plan": "gold", "auth": "identity"})[0].config == {
        "store": "cosmos", "database": "waymark-beta", "auth": "identity", "plan": "gold"}
    assert registry.create("gamma", config={"store": "sqlite"})[0].config == {"store": "sqlite"}
    assert registry.get("acme").config["database"] == "waymark-acme"


def test_another_secret_does_not_accept_the_key(tmp_path: Path) -> None:
    first = SqliteTenantRegistry(tmp_path / "tenants.db", secret=SECRET)
    _, key = first.create("acme")
    first.close()
    other = SqliteTenantRegistry(tmp_path / "tenants.db", secret="another-secret-0123456789abcdef")
    assert other.authenticate(key) is None
    other.close()


def test_sqlite_registry_is_shared_between_threads_and_reopened(tmp_path: Path) -> None:
    registry = SqliteTenantRegistry(tmp_path / "tenants.db", secret=SECRET)
    keys: dict[str, str] = {}

    def onboard(n: int) -> None:
        keys[f"t{n:02d}"] = registry.create(f"t{n:02d}")[1]

    threads = [threading.Thread(target=onboard, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    registry.close()
    with pytest.raises(StoreUnavailable):
        registry.get("t00")
    reopened = SqliteTenantRegistry(tmp_path / "tenants.db", secret=SECRET)
    assert [r.id for r in reopened.list()] == sorted(keys)
    assert all(reopened.authenticate(key) is not None for key in keys.values())
    reopened.close()


def test_an_unreachable_registry_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        SqliteTenantRegistry(blocker / "tenants.db", secret=SECRET)


def test_the_secret_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret"
    value, created = read_or_create_secret(path)
    assert created and len(value) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_secret(path) == (value, False)
    with pytest.raises(ValueError):
        KeyHasher("short")


def test_settings_come_from_the_environment_and_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAYMARK_PORT", "9999")
    monkeypatch.setenv("WAYMARK_DATA_DIR", "/tmp/from-env")
    monkeypatch.setenv("WAYMARK_LOAD_SAMPLES", "false")
    settings = Settings(port=1234)
    assert settings.port == 1234 and settings.data_dir == Path("/tmp/from-env") and settings.load_samples is False
    assert settings.max_body_bytes == 262_144 and settings.workers == 2 and settings.host == "127.0.0.1"
    monkeypatch.setenv("WAYMARK_ADMIN_KEY", "a-secret-admin-key-0123")
    assert "a-secret-admin-key" not in repr(Settings())


def test_the_cosmos_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    for name in ("WAYMARK_STORE", "WAYMARK_COSMOS_ENDPOINT", "WAYMARK_COSMOS_KEY", "WAYMARK_COSMOS_VERIFY",
                 "WAYMARK_COSMOS_VERIFY_TLS", "WAYMARK_TENANT_DATABASE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    default = Settings()
    assert (default.store, default.cosmos_endpoint, default.cosmos_key, default.cosmos_verify) == (
        "sqlite", None, None, True)
    assert default.tenant_database_prefix == "waymark-"
    with pytest.raises(ValidationError, match="needs a Cosmos endpoint"):
        Settings(store="cosmos")
    with pytest.raises(ValidationError):
        Settings(store="postgres")
    monkeypatch.setenv("WAYMARK_STORE", "cosmos")
    monkeypatch.setenv("WAYMARK_COSMOS_ENDPOINT", "https://127.0.0.1:8081/")
    monkeypatch.setenv("WAYMARK_COSMOS_KEY", "a-secret-cosmos-key")
    monkeypatch.setenv("WAYMARK_COSMOS_VERIFY", "false")
    settings = Settings()
    assert (settings.store, settings.cosmos_endpoint, settings.cosmos_verify) == (
        "cosmos", "https://127.0.0.1:8081/", False)
    assert settings.cosmos_key == "a-secret-cosmos-key" and "a-secret-cosmos-key" not in repr(settings)
    assert Settings(cosmos_verify=True).cosmos_verify is True  # by name, as `waymark serve` passes it
    monkeypatch.delenv("WAYMARK_COSMOS_VERIFY")
    monkeypatch.setenv("WAYMARK_COSMOS_VERIFY_TLS", "false")  # the Azure host's name for it
    assert Settings().cosmos_verify is False


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("", None), ("wait=5", 5.0), ("respond-async, wait=10", 10.0), ("wait=100", 30.0),
    ("wait=-3", 0.0), ("wait=abc", None), ("handling=lenient", None), ("WAIT = 2", 2.0), ('wait="4"', 4.0),
    ("wait=nan", None), ("wait=0.25", 0.25),
])
def test_prefer_wait_is_parsed_and_clamped(header: str | None, expected: float | None) -> None:
    wait = preferred_wait(header, 30.0)
    assert wait.seconds == expected
    # a `wait` that is not a number of seconds is ignored, and said so; no `wait` at all is nothing to say
    assert (wait.ignored is not None) == (header in ("wait=abc", "wait=nan"))
    if wait.seconds is not None:
        assert wait.headers() == {"Preference-Applied": f"wait={expected:g}"}


def test_first_start_creates_the_demo_tenant_with_the_samples_once() -> None:
    from engine.hosting.local import DEMO_TENANT, bootstrap
    from engine.hosting.runtime import memory_engine

    engine = memory_engine()
    tenants = MemoryTenantRegistry(secret=SECRET)
    first = bootstrap(engine, tenants, Settings(load_samples=True, demo_key=None))
    assert first is not None and first.demo_key is not None
    assert first.samples == ["document-review", "expense-claim"]
    assert [w for w, _ in engine.catalog.list(DEMO_TENANT)] == ["document-review", "expense-claim"]
    found = tenants.authenticate(first.demo_key)
    assert found is not None and found.id == DEMO_TENANT
    # a later start creates nothing; one that names a demo key makes it the demo tenant's key
    assert bootstrap(engine, tenants, Settings(load_samples=True)) is None
    assert bootstrap(engine, tenants, Settings(load_samples=True, demo_key="the-new-demo-key-0123456")) is None
    assert tenants.authenticate(first.demo_key) is None
    assert tenants.authenticate("the-new-demo-key-0123456") is not None
    assert [w for w, _ in engine.catalog.list(DEMO_TENANT)] == ["document-review", "expense-claim"]
    assert bootstrap(memory_engine(), MemoryTenantRegistry(secret=SECRET), Settings(load_samples=False)) is None
