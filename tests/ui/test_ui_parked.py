"""The dashboard's parked commands page: the tenant's own, filtered and paged; requeue (replay now) and discard, one
or every match, each through a confirmation page; escaped; and the banner of a tenant whose storage is held."""

from __future__ import annotations

import re

import httpx

from engine.domain import StoreUnavailable, Trigger
from engine.service.commands import SendTrigger, to_message
from tests.integration.conftest import RunningServer
from tests.ui.helpers import Tenant, csrf_of
from tests.webhook_receiver import wait_until

EVIL = "<script>alert(1)</script>"


def _park(server: RunningServer, tenant: Tenant, instance: str, n: int) -> None:
    """A trigger for an instance that does not exist: parked on its last delivery."""
    server.engine.queue.send(to_message(SendTrigger(tenant.id, instance, Trigger("update", f"{instance}-{n}",
                                                                                 {"amount": n}))))


def _parked(tenant: Tenant) -> list[dict[str, object]]:
    items: list[dict[str, object]] = tenant.api.get(f"/tenants/{tenant.id}/parked", params={"limit": 1000}).json()[
        "items"]
    return items


def test_parked_commands_are_listed_filtered_replayed_and_discarded(
        ui_server: RunningServer, tenant: Tenant, other_tenant: Tenant, session: httpx.Client) -> None:
    before = len(_parked(tenant))
    for n in range(30):
        _park(ui_server, tenant, f"lost-{n % 2}", n)
    _park(ui_server, other_tenant, "theirs", 1)
    wait_until(lambda: len(_parked(tenant)) == before + 30 and _parked(other_tenant), timeout=60,
               what="the commands parked")  # default max_dequeue_count 5: about half a minute of retries

    page = session.get("/ui/parked")
    assert page.status_code == 200 and 'aria-current="page">Parked' in page.text
    assert page.text.count("<tr>") == 1 + 25 and 'rel="next"' in page.text  # a page of 25
    assert "theirs" not in page.text  # the other tenant's are never shown
    following = re.search(r'href="/ui/parked(\?[^"]+)" rel="next"', page.text)
    assert following is not None
    second = session.get("/ui/parked" + following.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and "lost-" in second.text and "First page" in second.text

    only = session.get("/ui/parked", params={"instance": "lost-0", "reason": "failed"})
    assert only.text.count("lost-0-") == 15 and "lost-1-" not in only.text
    bad = session.get("/ui/parked", params={"since": "yesterday"})
    assert "is not an RFC 3339 time" in bad.text

    # Requeue every match of a filter: a confirmation page listing them first, then done (the instance exists now).
    assert tenant.api.post(f"/tenants/{tenant.id}/instances", headers={"Prefer": "wait=10"}, json={
        "workflowId": "expense-claim", "id": "lost-0", "context": {"claimant": "Ann"}}).status_code == 201
    csrf = csrf_of(only.text)
    confirm = session.post("/ui/parked/act", data={"csrf": csrf, "action": "requeue", "instance": "lost-0"})
    assert confirm.status_code == 200 and confirm.text.count("<li class=\"mono\">lost-0") == 15
    assert len(_parked(tenant)) == before + 30  # nothing done before confirming
    done = session.post("/ui/parked/act", data={"csrf": csrf, "action": "requeue", "instance": "lost-0",
                                                "confirmed": "yes"})
    assert done.status_code == 303 and done.headers["location"] == "/ui/parked?instance=lost-0"
    shown = session.get(done.headers["location"]).text
    assert "15 of 15 parked command(s) replayed" in shown
    history = tenant.api.get(f"/tenants/{tenant.id}/instances/lost-0/events").json()["items"]
    assert sorted(e["triggerId"] for e in history if e["type"] == "TransitionApplied") == sorted(
        f"lost-0-{n}" for n in range(0, 30, 2))

    # Discard one, by its own button (and confirmation).
    [one] = [p for p in _parked(tenant) if p["instanceId"] == "lost-1"][:1]
    session.post("/ui/parked/act", data={"csrf": csrf, "action": "discard", "id": one["id"], "confirmed": "yes"})
    assert one["id"] not in {p["id"] for p in _parked(tenant)}
    # A bulk action with no filter needs "all"; a forged token does nothing.
    refused = session.post("/ui/parked/act", data={"csrf": csrf, "action": "discard", "confirmed": "yes"})
    assert refused.status_code == 303 and "Give a filter first" in session.get("/ui/parked").text
    forged = session.post("/ui/parked/act", data={"csrf": "forged", "action": "discard", "instance": "lost-1",
                                                  "confirmed": "yes"})
    assert forged.status_code == 403 and len([p for p in _parked(tenant) if p["instanceId"] == "lost-1"]) == 14


def test_what_a_parked_command_says_is_escaped(ui_server: RunningServer, tenant: Tenant,
                                               session: httpx.Client) -> None:
    ui_server.engine.queue.send({"kind": EVIL, "tenant": tenant.id, "instanceId": "x"})
    wait_until(lambda: any(p["reason"] == "malformed" for p in _parked(tenant)), what="the malformed command")
    page = session.get("/ui/parked", params={"reason": "malformed"}).text
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_tenant_whose_storage_is_held_has_a_banner_on_every_page(ui_server: RunningServer, tenant: Tenant,
                                                                   session: httpx.Client) -> None:
    breakers = ui_server.engine.breakers
    for _ in range(breakers.threshold):
        breakers.failure(tenant.id, StoreUnavailable("sqlite event store", "disk gone"))
    try:
        for path in ("/ui/", "/ui/instances", "/ui/parked"):
            text = session.get(path).text
            assert "is unreachable" in text and "its commands are held, not lost" in text, path
    finally:
        breakers.success(tenant.id)
    assert "is unreachable" not in session.get("/ui/").text


def test_a_paused_subscription_has_a_banner_on_every_page(ui_server: RunningServer, tenant: Tenant,
                                                          session: httpx.Client) -> None:
    from tests.webhook_receiver import Receiver

    receiver = Receiver()
    try:
        assert tenant.api.put(f"/tenants/{tenant.id}/subscriptions/ops-hook",
                              json={"endpoint": receiver.url("/hook")}).json()["status"] == "active"
        assert tenant.api.post(f"/tenants/{tenant.id}/subscriptions/ops-hook/pause").json()["status"] == "paused"
        for path in ("/ui/", "/ui/parked"):
            text = session.get(path).text
            assert "Change-feed subscription ops-hook (webhook) is paused" in text, path
            assert "Nothing is lost; it waits to be resumed" in text
        tenant.api.post(f"/tenants/{tenant.id}/subscriptions/ops-hook/resume")
        assert "ops-hook" not in session.get("/ui/").text
    finally:
        tenant.api.delete(f"/tenants/{tenant.id}/subscriptions/ops-hook")
        receiver.close()
