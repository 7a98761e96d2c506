"""The parts of a tenant's configuration that the hosts read, parsed in one place.

A tenant's record (`TenantRecord.config`) is a JSON object. Most of it is free-form, but these keys say where the
tenant's data lives and how it is reached, and every host reads them through `parse_tenant_config` — the router
(engine/stores/routing.py), the Azure host's change feed and parked store, and the onboarding that records what
`infra/tenant.bicep` outputs. `tenantConfiguration`, that template's output, is exactly such an object (a test feeds
it key by key to this parser), so the template and the app cannot drift apart.

    key                      meaning                                                   default
    store                    `sqlite` or `cosmos`                                      the host's default store
    cosmosEndpoint           the Cosmos DB account of the tenant's database            the host's account
    database                 the tenant's Cosmos database                              {prefix}{tenant}
    eventsContainer          commits, partitioned by /instanceId                       events
    definitionsContainer     workflow definitions, partitioned by /workflowId          definitions
    subscriptionsContainer   change-feed subscriptions and delivery records (/pk)      subscriptions
    parkedContainer          parked commands, partitioned by /pk                       parked
    timersContainer          timers due past the queue's 7 days (/instanceId)          timers
    auth                     `key` (the host's account key) or `identity` (Entra ID)   key if the host has one
    eventGridTopicEndpoint   the tenant's Event Grid topic (published to)               none
    eventGridTopicId         its Azure resource id (for event subscriptions, the CLI)   none

`provisioning: true` marks a tenant whose onboarding has not verified its storage yet (engine/api/tenants.py): it has
no key anyone was shown, and the next onboarding request finishes it.

`databaseName` is read as `database` (what tenant.bicep output before the two names were made one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.domain import WaymarkError

__all__ = ["CONFIG_KEYS", "PROVISIONING", "InvalidTenantConfig", "TenantConfig", "parse_tenant_config"]


class InvalidTenantConfig(WaymarkError):
    """A tenant configuration whose known keys have wrong values; every problem is listed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"the tenant configuration is invalid: {'; '.join(problems)}")


@dataclass(frozen=True, slots=True)
class TenantConfig:
    store: str | None = None
    cosmos_endpoint: str | None = None
    database: str | None = None
    events_container: str = "events"
    definitions_container: str = "definitions"
    subscriptions_container: str = "subscriptions"
    parked_container: str = "parked"
    timers_container: str = "timers"
    auth: str | None = None
    event_grid_topic_endpoint: str | None = None
    event_grid_topic_id: str | None = None


PROVISIONING = "provisioning"

# configuration key -> TenantConfig field
CONFIG_KEYS: dict[str, str] = {
    "store": "store",
    "cosmosEndpoint": "cosmos_endpoint",
    "database": "database",
    "eventsContainer": "events_container",
    "definitionsContainer": "definitions_container",
    "subscriptionsContainer": "subscriptions_container",
    "parkedContainer": "parked_container",
    "timersContainer": "timers_container",
    "auth": "auth",
    "eventGridTopicEndpoint": "event_grid_topic_endpoint",
    "eventGridTopicId": "event_grid_topic_id",
}
_ALIASES = {"databaseName": "database"}
_CHOICES = {"store": ("sqlite", "cosmos"), "auth": ("key", "identity")}


def parse_tenant_config(config: Mapping[str, Any]) -> TenantConfig:
    """The known keys of `config` (others are left to whoever reads them). Empty values count as absent. Raises
    InvalidTenantConfig listing every known key whose value is not a string or not one of its choices."""
    problems: list[str] = []
    values: dict[str, str] = {}
    for key, value in config.items():
        known = _ALIASES.get(key, key)
        field_name = CONFIG_KEYS.get(known)
        if field_name is None or value is None or value == "":
            continue
        if not isinstance(value, str):
            problems.append(f"{key} must be a string, not {type(value).__name__}")
            continue
        choices = _CHOICES.get(known)
        if choices is not None and value not in choices:
            problems.append(f"{key} must be one of {', '.join(choices)}, not {value!r}")
            continue
        if known == key or field_name not in values:  # the current name wins over the old one
            values[field_name] = value
    if problems:
        raise InvalidTenantConfig(problems)
    return TenantConfig(**values)
