"""Tenants: the registry port and its adapters, tenant keys, the server secret and what it seals.

    base.py         the port: `TenantRegistry`, `TenantRecord`, tenant ids, the secrets of a tenant's configuration
    memory.py       the registry in memory
    sqlite.py       the registry in `{data_dir}/tenants.db` (`waymark serve`)
    cosmos.py       the registry in a Cosmos container (the Azure host)
    keys.py         tenant keys, hashed with the server secret; the sealers derived from it
    sealing.py      values sealed at rest under a key derived from the server secret
    config.py       the parts of a tenant's configuration the hosts read (where its data lives)
    onboarding.py   onboarding a tenant whose data is on Cosmos DB (and infra/tenant.bicep's outputs)

What others may use is re-exported here, except the Cosmos registry and onboarding (they load the Azure SDK:
import them from their modules) and the configuration parser (engine/tenants/config.py).
"""

from engine.tenants.base import (
    SECRET_CONFIG_KEYS,
    TENANT_ID_PATTERN,
    Defaults,
    InvalidTenantId,
    TenantAlreadyExists,
    TenantRecord,
    TenantRegistry,
    check_tenant_id,
    keep_config_secrets,
    replace_config_secrets,
)
from engine.tenants.keys import (
    DEFINITION_SECRETS,
    TENANT_SECRETS,
    ConfigSealing,
    KeyHasher,
    new_key,
    read_or_create_secret,
    sealer_of,
)
from engine.tenants.memory import MemoryTenantRegistry
from engine.tenants.sqlite import SqliteTenantRegistry

__all__ = [
    "DEFINITION_SECRETS", "SECRET_CONFIG_KEYS", "TENANT_ID_PATTERN", "TENANT_SECRETS", "ConfigSealing", "Defaults",
    "InvalidTenantId", "KeyHasher", "MemoryTenantRegistry", "SqliteTenantRegistry", "TenantAlreadyExists",
    "TenantRecord", "TenantRegistry", "check_tenant_id", "keep_config_secrets", "new_key", "read_or_create_secret",
    "replace_config_secrets", "sealer_of",
]
