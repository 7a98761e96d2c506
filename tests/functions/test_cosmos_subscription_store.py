"""The subscription-store contract (tests/feed/test_subscription_store.py) run on the Cosmos store, against the real
cosmosdb-server: the same test functions, imported, with a `store` fixture of this module's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from engine.domain import StoreUnavailable
from engine.feed.subscriptions_cosmos import CosmosSubscriptionStore
from tests.cosmos_fixtures import CosmosAccount
from tests.feed.test_subscription_store import (
    SEALER,
    _sub,
    test_delivery_records,
    test_modify_is_atomic_and_stores_a_default,
    test_save_get_list_delete,
)

__all__ = ["test_delivery_records", "test_modify_is_atomic_and_stores_a_default", "test_save_get_list_delete"]


@pytest.fixture
def store(cosmos_account: CosmosAccount) -> Iterator[CosmosSubscriptionStore]:
    prefix = f"subs-{uuid.uuid4().hex[:8]}"
    made = CosmosSubscriptionStore.on_client(cosmos_account.client, database=lambda tenant: f"{prefix}-{tenant}",
                                             auto_create=True, sealer=SEALER)
    yield made
    made.close()


def test_tenants_are_siloed_in_their_own_databases(store: CosmosSubscriptionStore,
                                                   cosmos_account: CosmosAccount) -> None:
    store.save("acme", _sub("hook"))
    store.record_deliveries("acme", 1, ["hook"])
    location = store.locate("acme")
    assert location.database.endswith("-acme") and location.container == "subscriptions"
    container = cosmos_account.client.get_database_client(location.database).get_container_client("subscriptions")
    docs = list(container.query_items("SELECT c.id, c.pk, c.kind FROM c", enable_cross_partition_query=True))
    assert sorted((d["kind"], d["pk"], d["id"]) for d in docs) == [("delivery", "delivery:1", "1:hook"),
                                                                  ("subscription", "subscriptions", "hook")]
    assert store.list("other") == [] and store.deliveries("other", 1) == set()


def test_a_missing_container_without_auto_create_is_store_unavailable(cosmos_account: CosmosAccount) -> None:
    store = CosmosSubscriptionStore.on_client(cosmos_account.client,
                                              database=lambda tenant: f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(StoreUnavailable) as caught:
        store.list("acme")
    assert "infra/tenant.bicep" in str(caught.value) and caught.value.store == "subscription store"


def test_secrets_are_sealed_in_the_documents(store: CosmosSubscriptionStore, cosmos_account: CosmosAccount) -> None:
    store.save("acme", _sub("hook", secret="the-webhook-secret"))
    location = store.locate("acme")
    container = cosmos_account.client.get_database_client(location.database).get_container_client("subscriptions")
    [doc] = list(container.query_items("SELECT * FROM c WHERE c.kind = 'subscription'",
                                       enable_cross_partition_query=True))
    assert doc["subscription"]["secret"].startswith("sealed:v1:") and "the-webhook-secret" not in str(doc)
    assert store.get("acme", "hook") == _sub("hook", secret="the-webhook-secret")
