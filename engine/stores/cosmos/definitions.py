"""The Cosmos DB definition store: workflow definitions in the tenant's `definitions` container."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.cosmos import CosmosClient, exceptions

from engine.domain import DefinitionChanged, StoreUnavailable, TenantNotFound, WorkflowNotFound
from engine.drivers.cosmos import Resolver, default_location
from engine.stores.checks import workflow_id_of
from engine.stores.cosmos.containers import STORE, Silo, Silos
from engine.stores.cosmos.documents import decode, encode, id_part, now


class CosmosDefinitionStore:
    """Workflow definitions in the tenant's `definitions` container: one document per version, created (never
    replaced), so a version once stored is never overwritten; two puts racing for a version retry with the next."""

    MAX_ATTEMPTS = 50

    def __init__(self, client: CosmosClient, *, resolve: Resolver = default_location,
                 auto_create: bool = False) -> None:
        self._silos = Silos(client, resolve, auto_create=auto_create)
        self.client = client

    def close(self) -> None:
        """Nothing to release: the client is the caller's."""

    def forget(self, tenant: str) -> None:
        """Resolve the tenant's containers again on its next call (after its configuration changed)."""
        self._silos.forget(tenant)

    def __enter__(self) -> CosmosDefinitionStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def put(self, tenant: str, document: Mapping[str, Any], *, expected_version: int | None = None) -> int:
        workflow_id = workflow_id_of(document)
        text = encode(document)
        silo = self._silos.get(tenant)
        for _ in range(self.MAX_ATTEMPTS):
            latest = self._latest(tenant, silo, workflow_id)
            if expected_version is not None and expected_version != latest:
                raise DefinitionChanged(tenant, workflow_id, expected_version, latest)
            version = latest + 1
            with self._silos.translated(tenant):
                try:
                    silo.definitions.create_item({
                        "id": f"{id_part(workflow_id)}:{version:08d}", "kind": "definition",
                        "workflowId": workflow_id, "version": version, "document": text,
                        "createdAt": now()}, no_response=True)
                except exceptions.CosmosResourceExistsError:
                    if expected_version is not None:  # another put took the version this one expected to follow
                        raise DefinitionChanged(tenant, workflow_id, expected_version,
                                                self._latest(tenant, silo, workflow_id)) from None
                    continue  # another put took this version: take the next
            return version
        raise StoreUnavailable(STORE, f"tenant {tenant!r}: too many concurrent puts of workflow {workflow_id!r}")

    def _latest(self, tenant: str, silo: Silo, workflow_id: str) -> int:
        docs = self._silos.query(tenant, silo.definitions, "SELECT TOP 1 c.version FROM c WHERE c.workflowId = @id"
                                 " AND c.kind = 'definition' ORDER BY c.version DESC",
                                 partition=workflow_id, id=workflow_id)
        return int(docs[0]["version"]) if docs else 0

    def get(self, tenant: str, workflow_id: str, version: int | None = None) -> tuple[int, dict[str, Any]]:
        silo = self._silos.get(tenant)
        if version is None:
            docs = self._silos.query(tenant, silo.definitions, "SELECT TOP 1 c.version, c.document FROM c"
                                     " WHERE c.workflowId = @id AND c.kind = 'definition' ORDER BY c.version DESC",
                                     partition=workflow_id, id=workflow_id)
        else:
            # A query, not a point read: cosmosdb-server answers a point read of a missing document with a 500.
            docs = self._silos.query(tenant, silo.definitions, "SELECT c.version, c.document FROM c"
                                     " WHERE c.workflowId = @id AND c.kind = 'definition' AND c.version = @version",
                                     partition=workflow_id, id=workflow_id, version=int(version))
        if not docs:
            raise WorkflowNotFound(tenant, workflow_id, version)
        document: dict[str, Any] = decode(docs[0]["document"])
        return int(docs[0]["version"]), document

    def ping(self, tenant: str) -> None:
        """Raise StoreUnavailable when the tenant's definitions container cannot be reached (or does not exist)."""
        try:
            silo = self._silos.get(tenant)
            with self._silos.translated(tenant):
                silo.definitions.read()
        except TenantNotFound as e:
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: its definitions container does not exist") from e

    def list(self, tenant: str) -> list[tuple[str, int]]:
        silo = self._silos.get(tenant)
        latest: dict[str, int] = {}
        for doc in self._silos.query(tenant, silo.definitions,
                                     "SELECT c.workflowId, c.version FROM c WHERE c.kind = 'definition'"):
            latest[doc["workflowId"]] = max(latest.get(doc["workflowId"], 0), int(doc["version"]))
        return sorted(latest.items())
