"""engine/hosting/azure_settings.py: reading the Azure host's app settings, and refusing bad ones all at once."""

from __future__ import annotations

import re

import pytest

from engine.hosting.azure_settings import SETTINGS, AzureSettingsError, load_azure_settings

IDENTITY_BASED = {
    "WAYMARK_STORE": "cosmos",
    "WAYMARK_COSMOS_ENDPOINT": "https://waymark-cosmos-abc.documents.azure.com:443/",
    "WAYMARK_QUEUE_NAME": "commands",
    "WAYMARK_QUEUE__queueServiceUri": "https://waymarkabc.queue.core.windows.net/",
    "WAYMARK_QUEUE__credential": "managedidentity",
    "WAYMARK_QUEUE__clientId": "11111111-2222-3333-4444-555555555555",
    "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
    "WAYMARK_ADMIN_KEY": "admin-key-0123456789abcdef",
    "WAYMARK_SECRET": "server-secret-0123456789abcdef",
    "WAYMARK_SWEEP_SCHEDULE": "0 */1 * * * *",
}


def test_identity_based_settings_with_defaults() -> None:
    settings = load_azure_settings(IDENTITY_BASED)

    assert settings.store == "cosmos"
    assert settings.cosmos_endpoint == IDENTITY_BASED["WAYMARK_COSMOS_ENDPOINT"]
    assert settings.cosmos_key is None
    assert settings.cosmos_verify_tls is True
    assert (settings.tenant_registry_database, settings.tenant_registry_container) == ("waymark", "tenants")
    assert settings.tenant_database_prefix == "waymark-"
    assert settings.queue.identity_based
    assert settings.queue.queue_name == "commands"
    assert settings.queue.service_uri == "https://waymarkabc.queue.core.windows.net/"
    assert settings.queue.client_id == settings.managed_identity_client_id == IDENTITY_BASED["AZURE_CLIENT_ID"]
    assert settings.applicationinsights_connection_string is None
    assert (settings.outbox_grace_seconds, settings.max_wait_seconds, settings.log_level) == (60.0, 30.0, "info")
    assert (settings.expression_max_steps, settings.expression_max_seconds) == (20_000_000, 2.0)
    assert (settings.outbound_max_seconds, settings.outbound_max_response_bytes, settings.feed_timeout_seconds) == (
        30.0, 262_144, 10.0)


def test_secret_based_settings() -> None:
    environ = {
        **{k: v for k, v in IDENTITY_BASED.items() if not k.startswith("WAYMARK_QUEUE__")},
        "WAYMARK_QUEUE": "UseDevelopmentStorage=true",
        "WAYMARK_QUEUE__queueServiceUri": "",  # empty is unset
        "WAYMARK_COSMOS_KEY": "local-cosmos-key",
        "WAYMARK_COSMOS_VERIFY_TLS": "FALSE",
        "WAYMARK_LOG_LEVEL": "DEBUG",
        "WAYMARK_MAX_WAIT_SECONDS": "12.5",
        "WAYMARK_EXPRESSION_MAX_STEPS": "5000",
    }
    settings = load_azure_settings(environ)

    assert not settings.queue.identity_based
    assert settings.queue.connection_string == "UseDevelopmentStorage=true"
    assert settings.queue.service_uri is None
    assert settings.cosmos_key == environ["WAYMARK_COSMOS_KEY"]
    assert settings.cosmos_verify_tls is False
    assert settings.log_level == "debug"
    assert settings.max_wait_seconds == 12.5
    assert settings.expression_max_steps == 5000


def test_secrets_stay_out_of_repr() -> None:
    environ = {**IDENTITY_BASED, "WAYMARK_COSMOS_KEY": "cosmos-key-value", "APPLICATIONINSIGHTS_CONNECTION_STRING":
               "InstrumentationKey=secret-ikey"}
    shown = repr(load_azure_settings(environ))
    for secret in ["cosmos-key-value", "secret-ikey", IDENTITY_BASED["WAYMARK_ADMIN_KEY"], IDENTITY_BASED["WAYMARK_SECRET"]]:
        assert secret not in shown


def test_every_missing_setting_is_listed_at_once() -> None:
    with pytest.raises(AzureSettingsError) as refused:
        load_azure_settings({})

    required = [setting.name for setting in SETTINGS if setting.required]
    assert len(required) >= 6
    for name in required:
        assert any(problem.startswith(f"{name} is not set") for problem in refused.value.problems), name
    assert any("no connection" in problem for problem in refused.value.problems)
    assert str(len(refused.value.problems)) in str(refused.value)


def test_every_invalid_setting_is_listed_and_secrets_are_not_echoed() -> None:
    environ = {
        **IDENTITY_BASED,
        "WAYMARK_STORE": "sqlite",
        "WAYMARK_COSMOS_ENDPOINT": "waymark-cosmos.documents.azure.com",
        "WAYMARK_QUEUE_NAME": "Commands_Queue",
        "WAYMARK_QUEUE": "UseDevelopmentStorage=true",  # and __queueServiceUri: both
        "WAYMARK_QUEUE__credential": "password",
        "WAYMARK_ADMIN_KEY": "short-admin",
        "WAYMARK_SWEEP_SCHEDULE": "*/5 * * * *",
        "WAYMARK_OUTBOX_GRACE_SECONDS": "soon",
        "WAYMARK_MAX_WAIT_SECONDS": "231",
        "WAYMARK_LOG_LEVEL": "loud",
        "WAYMARK_COSMOS_VERIFY_TLS": "maybe",
    }
    with pytest.raises(AzureSettingsError) as refused:
        load_azure_settings(environ)

    problems = refused.value.problems
    for name in ["WAYMARK_STORE", "WAYMARK_COSMOS_ENDPOINT", "WAYMARK_QUEUE_NAME", "WAYMARK_QUEUE__credential",
                 "WAYMARK_ADMIN_KEY", "WAYMARK_SWEEP_SCHEDULE", "WAYMARK_OUTBOX_GRACE_SECONDS",
                 "WAYMARK_MAX_WAIT_SECONDS", "WAYMARK_LOG_LEVEL", "WAYMARK_COSMOS_VERIFY_TLS"]:
        assert any(problem.startswith(f"{name} = ") for problem in problems), name
    assert any("both set" in problem for problem in problems)
    assert "short-admin" not in str(refused.value)


def test_the_declared_settings_are_well_formed() -> None:
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names))
    for setting in SETTINGS:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", setting.name)
        assert setting.description.strip()
        assert not (setting.required and setting.default is not None), setting.name
        assert setting.deployed or not setting.required, f"{setting.name} is required but main.bicep does not set it"
