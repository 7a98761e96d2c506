"""The tenant registry on Cosmos DB (the Azure host's): `CosmosTenantRegistry` implements the `TenantRegistry` port
(engine/tenants/base.py) in a container `tenants` (partitioned by `/id`, one document per tenant) of the platform's
database (main.bicep provisions it in Azure):

    {"id": "acme", "keyHash": "<HMAC-SHA256 hex>", "createdAt": "…", "config": {…}}

The key hash is found by a cross-partition query on `keyHash` (indexed). Cosmos cannot make it unique across
partitions, so `create` refuses a key already in use by querying first (a race of two onboardings given the
*same explicit* key is not caught; generated keys carry 256 random bits and never collide).
"""
from __future__ import annotations

import builtins
import contextlib
import copy
import hmac
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError
from azure.cosmos import PartitionKey, exceptions

from engine.domain.errors import StoreUnavailable, TenantNotFound
from engine.domain.events import timestamp
from engine.tenants.base import TenantAlreadyExists, TenantRecord, check_tenant_id, keep_config_secrets
from engine.tenants.keys import ConfigSealing, KeyHasher, new_key

__all__ = ["CosmosTenantRegistry"]

STORE = "tenant registry (cosmos)"


class CosmosTenantRegistry(ConfigSealing):
    """The tenant registry in a Cosmos container. Thread-safe; the client is the caller's (one per account).

    `create=True` creates the database and container if missing (key auth, local servers); in Azure, main.bicep
    provisions them and the app's identity only has data-plane rights.
    """

    def __init__(self, client: Any, *, secret: str | bytes, database: str = "waymark", container: str = "tenants",
                 create: bool = False) -> None:
        self.hasher = KeyHasher(secret)
        self.client = client
        self.database = database
        self.container_name = container
        if create:
            with self._translated():
                db = client.create_database_if_not_exists(database)
                db.create_container_if_not_exists(container, PartitionKey("/id"))
        self._container = client.get_database_client(database).get_container_client(container)

    def create(self, tenant_id: str, *, key: str | None = None,
               config: Mapping[str, Any] | None = None) -> tuple[TenantRecord, str]:
        check_tenant_id(tenant_id)
        key = key or new_key()
        record = TenantRecord(tenant_id, self.hasher.hash(key), timestamp(datetime.now(UTC)),
                              copy.deepcopy(dict(config or {})))
        if self._by_hash(record.key_hash) is not None:
            raise ValueError("this key is already the key of another tenant")
        with self._translated():
            try:
                self._container.create_item(self._document(record), no_response=True)
            except exceptions.CosmosResourceExistsError as e:
                raise TenantAlreadyExists(tenant_id) from e
        return record, key

    def get(self, tenant_id: str) -> TenantRecord:
        # A query, not a point read: cosmosdb-server answers a point read of a missing document with a 500.
        docs = self._query("SELECT * FROM c WHERE c.id = @id", partition=tenant_id, id=tenant_id)
        if not docs:
            raise TenantNotFound(tenant_id)
        return self._record(docs[0])

    def authenticate(self, key: str) -> TenantRecord | None:
        wanted = self.hasher.hash(key)
        record = self._by_hash(wanted)
        if record is None or not hmac.compare_digest(record.key_hash, wanted):
            return None
        return record

    def rotate_key(self, tenant_id: str, *, key: str | None = None) -> str:
        key = key or new_key()
        self._patch(tenant_id, [{"op": "set", "path": "/keyHash", "value": self.hasher.hash(key)}])
        return key

    def update_config(self, tenant_id: str, config: Mapping[str, Any]) -> TenantRecord:
        """Replace the tenant's configuration (e.g. with the outputs of infra/tenant.bicep)."""
        stored = self._sealed_config(keep_config_secrets(config, self.get(tenant_id).config))
        self._patch(tenant_id, [{"op": "set", "path": "/config", "value": stored}])
        return self.get(tenant_id)

    def list(self) -> list[TenantRecord]:
        return [self._record(doc) for doc in self._query("SELECT * FROM c ORDER BY c.id")]

    def ping(self) -> None:
        with self._translated():
            self._container.read()

    def close(self) -> None:
        """Nothing to release: the client is the caller's."""

    # ------------------------------------------------------------------------------------------ inside

    def _by_hash(self, key_hash: str) -> TenantRecord | None:
        docs = self._query("SELECT * FROM c WHERE c.keyHash = @hash", hash=key_hash)
        return self._record(docs[0]) if docs else None

    def _patch(self, tenant_id: str, operations: builtins.list[dict[str, Any]]) -> None:
        with self._translated():
            try:
                self._container.patch_item(tenant_id, tenant_id, operations, no_response=True)
            except exceptions.CosmosResourceNotFoundError as e:
                raise TenantNotFound(tenant_id) from e

    def _query(self, sql: str, *, partition: str | None = None,
               **parameters: Any) -> builtins.list[dict[str, Any]]:
        params = [{"name": f"@{name}", "value": value} for name, value in parameters.items()]
        with self._translated():
            if partition is None:
                return list(self._container.query_items(sql, parameters=params, enable_cross_partition_query=True))
            return list(self._container.query_items(sql, parameters=params, partition_key=partition))

    def _document(self, record: TenantRecord) -> dict[str, Any]:
        """The stored document: the configuration's secrets sealed (SECRET_CONFIG_KEYS in engine/tenants/base.py)."""
        return {"id": record.id, "keyHash": record.key_hash, "createdAt": record.created_at,
                "config": self._sealed_config(record.config)}

    def _record(self, doc: Mapping[str, Any]) -> TenantRecord:
        return TenantRecord(doc["id"], doc["keyHash"], doc["createdAt"], self._opened_config(doc.get("config") or {}))

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Every driver error of the registry leaves as StoreUnavailable (a missing container too: then the
        registry itself is unreachable, not a tenant)."""
        try:
            yield
        except AzureError as e:
            status = getattr(e, "status_code", None)
            first = (str(getattr(e, "message", None) or e).strip().splitlines() or [""])[0]
            where = f"{self.database}/{self.container_name}"
            raise StoreUnavailable(STORE, f"{where}: {'HTTP ' + str(status) if status else type(e).__name__}"
                                          f": {first}") from e


# ---------------------------------------------------------------------------------------------- onboarding


