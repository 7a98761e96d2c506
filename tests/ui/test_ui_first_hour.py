"""The dashboard's first-hour fixes over HTTP (issue 15): what the login page says about the cookie, the list's
orders and id search, "Recently updated", the explanation after a recovery, the path taken on the diagram and
distinct labels for transitions that share a trigger, and one time format with the stored value on hover."""

from __future__ import annotations

import re
import uuid
from html import unescape

import httpx
import pytest

from tests.ui.helpers import Tenant, csrf_of

pytestmark = pytest.mark.integration

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
TWO_WAYS = {
    "id": "two-ways", "initialState": "open",
    "states": {
        "open": {"transitions": [
            {"id": "approve-small", "trigger": "approve", "target": "done",
             "conditions": [{"type": "expression", "expression": "trigger.content.amount < 100"}]},
            {"id": "approve-big", "trigger": "approve", "target": "review"},
            {"id": "note", "trigger": "note", "target": "open"},
        ]},
        "review": {"transitions": [{"id": "done", "trigger": "approve", "target": "done"}]},
        "done": {},
    },
}


def ids_listed(html: str) -> list[str]:
    return re.findall(r'<a class="mono" href="/ui/instances/([^"]+)"', html.split('id="instance-list"', 1)[-1])


def text_of(html: str) -> str:
    """The page's text, without tags and attributes."""
    return unescape(re.sub(r"<[^>]+>", " ", html))


def test_the_login_page_says_what_the_cookie_holds(session: httpx.Client) -> None:
    with httpx.Client(base_url=str(session.base_url)) as anonymous:
        page = " ".join(text_of(anonymous.get("/ui/login").text).split())
    assert "random session id" not in page
    assert "sealed" in page and "rotating it ends the session" in page


def test_the_list_is_by_last_update_or_by_id_in_natural_order_with_an_id_search(session: httpx.Client,
                                                                                tenant: Tenant) -> None:
    prefix = f"nat-{uuid.uuid4().hex[:4]}"
    made = {n: tenant.waiting(prefix=f"{prefix}-{n}") for n in (42, 5, 4)}  # ids like nat-ab12-42-1a2b3c4d
    tenant.trigger(made[5], "split", {"parts": 2})  # the newest update
    by_update = ids_listed(session.get("/ui/instances", params={"q": prefix}).text)
    assert by_update == [made[5], made[4], made[42]]
    by_id = ids_listed(session.get("/ui/instances", params={"q": prefix, "sort": "id"}).text)
    assert by_id == [made[4], made[5], made[42]]  # natural order: 4 < 5 < 42
    upper = ids_listed(session.get("/ui/instances", params={"q": f"{prefix}-4".upper(), "sort": "id"}).text)
    assert upper == [made[4], made[42]]  # case-insensitive, "contains"
    exact = ids_listed(session.get("/ui/instances", params={"q": made[42]}).text)
    assert exact == [made[42]]
    form = session.get("/ui/instances").text
    assert 'name="q"' in form and 'option value="id"' in form


def test_the_overview_shows_the_recently_updated_instances(session: httpx.Client, tenant: Tenant) -> None:
    first = tenant.waiting()
    last = tenant.waiting()
    html = session.get("/ui/").text
    section = html.split('id="recently-updated"', 1)[1].split("</table>", 1)[0]
    recent = re.findall(r'<a class="mono" href="/ui/instances/([^"]+)"', section)
    assert recent[0] == last and first in recent


def test_after_a_recovery_the_explanation_no_longer_says_faulted(session: httpx.Client, tenant: Tenant) -> None:
    instance_id = tenant.faulted()
    page = session.get(f"/ui/instances/{instance_id}").text
    form = {"csrf": csrf_of(page), "op": f"op-{uuid.uuid4().hex}", "mode": "reset", "state": "paid",
            "reason": "paid by hand", "confirmed": "yes"}
    assert session.post(f"/ui/instances/{instance_id}/recover", data=form).status_code == 303
    after = session.get(f"/ui/instances/{instance_id}").text
    explanation = " ".join(text_of(after.split('id="explanation"', 1)[1].split("</ul>", 1)[0]).split())
    assert "FAULTED" not in explanation and "is Faulted" not in explanation
    assert "is Complete in state 'paid'" in explanation
    assert "It got there by a reset to 'paid'" in explanation
    assert "It had faulted at" in explanation and "it was recovered (reset)" in explanation
    assert "No transition was ever applied" not in explanation


def test_the_diagram_shows_the_path_taken_and_tells_same_trigger_transitions_apart(session: httpx.Client,
                                                                                   tenant: Tenant) -> None:
    assert tenant.api.put(f"/tenants/{tenant.id}/workflows/two-ways", json=TWO_WAYS).status_code in (200, 201)
    instance_id = tenant.waiting("two-ways", {}, prefix="two")
    assert tenant.trigger(instance_id, "note") == "applied"
    assert tenant.trigger(instance_id, "approve", {"amount": 500}) == "applied"  # the big one: to review
    html = session.get(f"/ui/instances/{instance_id}").text
    diagram = html.split("<svg", 1)[1].split("</svg>", 1)[0]
    labels = re.findall(r'<text class="edge-label"[^>]*>([^<]+)</text>', diagram)
    assert {"approve (approve-small)", "approve (approve-big)", "note"} <= set(labels)
    taken = re.findall(r'<g class="edge[^"]*\btaken\b[^"]*">\s*<title>([^<]+)</title>', diagram)
    assert sorted(title.split(" (transition ")[1].split(")")[0] for title in taken) == ["approve-big", "note"]
    visited = set(re.findall(r'<g class="node[^"]*\bvisited\b[^"]*" data-state="([^"]+)"', diagram))
    assert visited == {"open", "review"}
    assert "path taken" in html


def test_one_time_format_with_the_stored_value_on_hover(session: httpx.Client, tenant: Tenant) -> None:
    instance_id = tenant.faulted()
    for path in ("/ui/", "/ui/instances", f"/ui/instances/{instance_id}", "/ui/feed"):
        html = session.get(path).text
        times = re.findall(r'<time datetime="([^"]*)" title="([^"]*)">([^<]*)</time>', html)
        assert times, path
        for stored, hover, shown in times:
            assert stored == hover and ISO.fullmatch(stored), (path, stored)
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", shown), (path, shown)
        assert len(times) == html.count("<time"), f"{path}: a <time> without its title"
        assert not ISO.search(text_of(html)), f"{path}: a stored time shown as it is stored"
