"""The dashboard's pure parts, without a server: the diagram layout, the session store, the security checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.domain import default_registry, parse_definition
from engine.domain.events import Event, EventType
from engine.tenants.sealing import Sealer
from engine.ui.diagram import layout
from engine.ui.security import same_origin, tokens_match
from engine.ui.sessions import SessionStore
from engine.ui.timeline import describe
from tests.integration.test_operations import PAYMENTS

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def definition(document: dict[str, Any]) -> Any:
    return parse_definition(document, default_registry(), version=1)


def overlaps(a: Any, b: Any) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def test_the_layout_puts_states_in_columns_by_distance_and_highlights_the_current_one() -> None:
    claim = definition(json.loads((SAMPLES / "expense-claim.json").read_text()))
    diagram = layout(claim, current="awaiting-approval")
    boxes = {box.state: box for box in diagram.boxes}
    assert set(boxes) == set(claim.states)
    assert boxes["draft"].x < boxes["awaiting-approval"].x < boxes["awaiting-payment"].x < boxes["paid"].x
    assert [box.state for box in diagram.boxes if box.current] == ["awaiting-approval"]
    assert boxes["draft"].initial and boxes["paid"].terminal and boxes["abandoned"].terminal
    assert not boxes["draft"].terminal
    for box in diagram.boxes:
        assert box.x >= 0 and box.y >= 0
        assert box.x + box.width <= diagram.width and box.y + box.height <= diagram.height
        assert all(not overlaps(box, other) for other in diagram.boxes if other is not box), box.state
    transitions = sum(len(state.transitions) for state in claim.states.values())
    assert len(diagram.edges) == transitions
    assert {(e.source, e.target) for e in diagram.edges if e.from_current} == {
        ("awaiting-approval", "awaiting-payment"), ("awaiting-approval", "draft")}
    back = next(e for e in diagram.edges if (e.source, e.target) == ("awaiting-approval", "draft"))
    assert back.label_y > max(box.y + box.height for box in diagram.boxes), "a way back runs below every box"
    loop = next(e for e in diagram.edges if e.source == e.target == "draft")
    assert loop.label_y < boxes["draft"].y, "a self-transition is a loop above its box"


def test_long_names_wrap_and_shorten_and_the_full_text_is_in_the_title() -> None:
    name = "A very long display name that goes on and on and on for ever"
    document = {"id": "w", "initialState": "a", "states": {
        "a": {"displayName": name, "transitions": [{"id": "t", "trigger": "x" * 60, "target": "b"}]}, "b": {}}}
    diagram = layout(definition(document))
    box = diagram.box("a")
    assert len(box.lines) == 2 and box.lines[-1][0].endswith("…") and box.detail == "a"
    assert name in box.title
    edge = diagram.edges[0]
    assert len(edge.label) == 28 and edge.label.endswith("…") and "x" * 60 in edge.title


def test_a_diagram_without_a_current_state_highlights_nothing() -> None:
    diagram = layout(definition(PAYMENTS), current="not-a-state")
    assert diagram.current is None and not any(box.current for box in diagram.boxes)
    assert not any(edge.from_current for edge in diagram.edges)


def test_a_wide_workflow_lays_out_without_overlaps() -> None:
    states: dict[str, Any] = {f"s{n}": {"transitions": [
        {"id": f"t{n}-{m}", "trigger": f"go-{m}", "target": f"s{m}"} for m in range(12) if m != n and (m - n) % 5 < 2
    ]} for n in range(12)}
    states["s0"]["transitions"].append({"id": "to-end", "trigger": "finish", "target": "end"})
    states["end"] = {}
    diagram = layout(definition({"id": "wide", "initialState": "s0", "states": states}), current="s7")
    for box in diagram.boxes:
        assert all(not overlaps(box, other) for other in diagram.boxes if other is not box), box.state


def test_sessions_end_when_idle_too_long_or_too_old_or_logged_out() -> None:
    now = [1000.0]
    store = SessionStore(sealer=Sealer(bytes(32), "dashboard sessions"), idle_seconds=60, max_age_seconds=300, clock=lambda: now[0])
    session = store.create(tenant="acme", key=b"k", admin=False, operator="Jo")
    assert session.who() == "Jo (tenant 'acme' via dashboard)"
    token = store.seal(session)
    for _ in range(5):
        now[0] += 59
        again = store.get(token)
        assert again is not None and (again.id, again.tenant, again.key, again.csrf) == (
            session.id, "acme", b"k", session.csrf)
        token = store.seal(again)  # each request seals it again: it stays alive
    now[0] += 59
    assert store.get(token) is None, "too old, however busy"
    idle = store.create(tenant="acme", key=b"k", admin=False)
    idle_token = store.seal(idle)
    now[0] += 61
    assert store.get(idle_token) is None
    admin = store.create(tenant="t", key=b"admin key", admin=True)
    admin_token = store.seal(admin)
    assert admin.who() == "admin via dashboard"
    assert store.get("") is None and store.get(None) is None
    opened = store.get(admin_token)
    assert opened is not None and opened.admin
    store.end(opened)
    assert opened.ended and store.get(admin_token) is None


def test_a_session_opens_in_every_process_with_the_secret_and_nowhere_else() -> None:
    from engine.tenants import KeyHasher

    def sealer(secret: str, purpose: str = "dashboard sessions") -> Sealer:
        return KeyHasher(secret).sealer(purpose)

    # Two processes of one host, each with its own sealer from the same secret.
    here = SessionStore(sealer=sealer("server-secret-0123456789"))
    elsewhere = SessionStore(sealer=sealer("server-secret-0123456789"))
    session = here.create(tenant="acme", key="wmt_ké".encode(), admin=False, operator="Jo")
    session.flash("success", "x" * 5000)
    token = here.seal(session)
    opened = elsewhere.get(token)
    assert opened is not None and opened.key == "wmt_ké".encode() and opened.operator == "Jo"
    assert opened.take_flashes() == [("success", "x" * 400)]
    assert len(token) < 1500
    assert SessionStore(sealer=sealer("another-secret-0123456789")).get(token) is None
    assert SessionStore(sealer=sealer("server-secret-0123456789", "something else")).get(token) is None
    assert SessionStore().get(token) is None  # no secret: a random key of the process
    for n in range(0, len(token) - 2, 7):  # any change to the sealed bytes is refused (the last character may
        # also carry base64 padding bits, which decode to the same bytes)
        changed = token[:n] + ("A" if token[n] != "A" else "B") + token[n + 1:]
        assert elsewhere.get(changed) is None
    assert elsewhere.get("not a sealed session") is None and elsewhere.get("=") is None


def test_session_ids_and_tokens_are_random_and_distinct() -> None:
    store = SessionStore()
    made = [store.create(tenant="t", key=b"k", admin=False) for _ in range(50)]
    values = {s.id for s in made} | {s.csrf for s in made} | {store.seal(s) for s in made}
    assert len(values) == 150 and all(len(v) >= 40 for v in values)


def test_flashes_are_shown_once() -> None:
    session = SessionStore().create(tenant="t", key=b"k", admin=False)
    session.flash("success", "done")
    assert session.take_flashes() == [("success", "done")] and session.take_flashes() == []


@pytest.mark.parametrize(("headers", "host", "ok"), [
    ({}, "127.0.0.1:8080", True),
    ({"origin": "http://127.0.0.1:8080"}, "127.0.0.1:8080", True),
    ({"origin": "https://waymark.example"}, "waymark.example", True),
    ({"origin": "https://waymark.example:443"}, "waymark.example", True),
    ({"origin": "http://127.0.0.1:9999"}, "127.0.0.1:8080", False),
    ({"origin": "https://evil.example"}, "waymark.example", False),
    ({"origin": "null"}, "waymark.example", False),
    ({"sec-fetch-site": "same-origin"}, "waymark.example", True),
    ({"sec-fetch-site": "none"}, "waymark.example", True),
    ({"sec-fetch-site": "same-site"}, "waymark.example", False),
    ({"sec-fetch-site": "cross-site", "origin": "https://waymark.example"}, "waymark.example", False),
])
def test_same_origin(headers: dict[str, str], host: str, ok: bool) -> None:
    assert same_origin(headers, host=host) is ok


def test_tokens_match() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abd", "abc") and not tokens_match("", "abc") and not tokens_match(None, "abc")
    assert not tokens_match("abc", "") and not tokens_match("é", "abc")


def test_the_timeline_says_what_each_event_did_in_plain_text() -> None:
    def event(kind: EventType, data: dict[str, Any]) -> Event:
        return Event("i-1", 2, kind, "2025-01-01T00:00:00.000000Z", "t-1", data)

    applied = describe(event(EventType.TRANSITION_APPLIED, {
        "transition": "submit", "from": "draft", "to": "awaiting-approval", "topic": "submit",
        "content": {"amount": 3}, "contextChanges": {"set": {"amount": 3}, "removed": ["old"]}}))
    assert applied.headline == "Trigger submit: draft → awaiting-approval (transition submit)"
    assert ("context set", "amount = 3") in applied.details and ("context removed", "old") in applied.details
    assert applied.blocks == (("trigger content", '{\n  "amount": 3\n}'),)
    faulted = describe(event(EventType.FAULTED, {"where": "$.x", "errorType": "DivisionByZero", "message": "m",
                                                 "trigger": None, "transition": None}))
    assert faulted.headline == "Faulted at creation" and faulted.kind == "faulted"
    recovered = describe(event(EventType.RECOVERED, {"mode": "reset", "by": "jo", "reason": "[/]<b>",
                                                     "state": "due", "context": {}}))
    assert ("reason", "[/]<b>") in recovered.details, "kept as text: no markup of any kind is parsed"
