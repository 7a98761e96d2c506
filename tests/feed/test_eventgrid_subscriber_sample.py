"""The Event Grid subscriber sample (samples/eventgrid_subscriber): a Functions app fed real `azure.functions`
CloudEvents, built by the library's own Event Grid converter from the JSON Event Grid delivers, over a real
Table Storage (Azurite's table service). Deliveries are shuffled and repeated, as Event Grid may: the projection
ends where the engine is, records each event once, and knows how far its history has no gap.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from cloudevents.core.formats.json import JSONFormat

from engine.feed import CloudEventMapper
from engine.hosting.runtime import memory_engine
from engine.service.engine import Engine
from samples.eventgrid_subscriber import function_app as subscriber
from samples.eventgrid_subscriber.projection import WaymarkEvent
from tests.azure_fixtures import AzuriteServer
from tests.feed.helpers import TENANT, create, trigger
from tests.infra.bicep_source import parse, problems, text, walk

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "eventgrid_subscriber"


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    with AzuriteServer(tmp_path_factory.mktemp("azurite-table"), services=("table",)) as server:
        yield server


@pytest.fixture
def app(tables: AzuriteServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Any]:
    monkeypatch.setenv("PROJECTION_STORAGE", tables.connection_string)
    monkeypatch.setenv("PROJECTION_TABLE", "p" + request.node.name.replace("_", "")[:40])
    monkeypatch.setattr(subscriber, "_projection", None)
    yield subscriber


def functions() -> dict[str, Any]:
    return {fn.get_function_name(): fn for fn in subscriber.app.get_functions()}


_FUNCTIONS = functions()  # `get_functions()` may be called once per app


def delivered(event: Any) -> func.CloudEvent:
    """The `azure.functions.CloudEvent` the worker builds from what Event Grid posts for one CloudEvent."""
    body = JSONFormat().write(event).decode()
    built = EventGridEventInConverter.decode(meta.Datum(body, "json"), trigger_metadata={})
    assert isinstance(built, func.CloudEvent)
    return built


def claims(engine: Engine, count: int) -> list[Any]:
    """Claims left in different states, and every CloudEvent their commits became."""
    for n in range(count):
        claim = f"claim-{n}"
        create(engine, claim)
        trigger(engine, claim, "update", f"{claim}-u", amount=n + 1)
        if n % 3 >= 1:
            trigger(engine, claim, "submit", f"{claim}-s")
        if n % 3 == 2:
            trigger(engine, claim, "approve", f"{claim}-a", approver="K Boss")
    commits = engine.events.read_feed(TENANT, after=0, limit=10_000)
    return [event for group in CloudEventMapper(engine.events).page(TENANT, commits) for event in group]


def test_the_function_is_an_event_grid_trigger_taking_cloudevents() -> None:
    function = _FUNCTIONS["waymark_events"]
    [binding] = [b for b in json.loads(function.get_function_json())["bindings"] if b["direction"] == "IN"]
    assert binding["type"] == "eventGridTrigger" and binding["name"] == "event"
    assert EventGridEventInConverter.check_input_type_annotation(func.CloudEvent)
    assert (SAMPLE / "requirements.txt").read_text().count("==") == 2


def test_shuffled_and_repeated_deliveries_end_where_the_engine_is(app: Any) -> None:
    engine = memory_engine()
    engine.catalog.put(TENANT, json.loads((SAMPLE.parents[0] / "expense-claim.json").read_text()))
    events = claims(engine, 9)
    deliveries = events * 2
    random.Random(7).shuffle(deliveries)
    handler = _FUNCTIONS["waymark_events"].get_user_function()
    for event in deliveries:
        handler(delivered(event))
    projection = app.projection()
    for n in range(9):
        instance = engine.events.load(TENANT, f"claim-{n}")
        view = projection.view(TENANT, instance.id)
        assert view is not None
        assert (view["state"], view["status"], view["context"]) == (instance.state, str(instance.status),
                                                                   dict(instance.context))
        assert view["sequence"] == view["contiguous"] == instance.version
        assert [s for s, _ in projection.history(TENANT, instance.id)] == list(range(1, instance.version + 1))


def test_a_late_event_fills_the_gap_and_leaves_the_view(app: Any) -> None:
    engine = memory_engine()
    engine.catalog.put(TENANT, json.loads((SAMPLE.parents[0] / "expense-claim.json").read_text()))
    first, update, submit = [delivered(e) for e in claims(engine, 2) if e.get_subject() == "claim-1"]
    projection = app.projection()
    assert projection.apply(WaymarkEvent.from_cloudevent(first))
    assert projection.apply(WaymarkEvent.from_cloudevent(submit))  # event 3 before event 2
    view = projection.view(TENANT, "claim-1")
    assert view is not None and (view["sequence"], view["contiguous"], view["state"]) == (3, 1, "awaiting-approval")
    assert projection.apply(WaymarkEvent.from_cloudevent(update))
    assert not projection.apply(WaymarkEvent.from_cloudevent(update))  # by id: recorded once
    view = projection.view(TENANT, "claim-1")
    assert view is not None and (view["sequence"], view["contiguous"], view["state"]) == (3, 3, "awaiting-approval")
    assert projection.history(TENANT, "claim-1") == [(1, "created"), (2, "transitioned"), (3, "transitioned")]


def test_the_http_function_serves_the_view(app: Any) -> None:
    engine = memory_engine()
    engine.catalog.put(TENANT, json.loads((SAMPLE.parents[0] / "expense-claim.json").read_text()))
    for event in claims(engine, 1):
        _FUNCTIONS["waymark_events"].get_user_function()(delivered(event))
    view = _FUNCTIONS["instance_view"].get_user_function()
    found = view(func.HttpRequest("GET", f"/api/instances/{TENANT}/claim-0", body=b"",
                                  route_params={"tenant": TENANT, "instance": "claim-0"}))
    assert found.status_code == 200 and json.loads(found.get_body())["state"] == "draft"
    missing = view(func.HttpRequest("GET", "/api/instances/x/y", body=b"", route_params={"tenant": "x",
                                                                                         "instance": "y"}))
    assert missing.status_code == 404


def test_a_foreign_event_is_refused() -> None:
    foreign = func.CloudEvent(id="x", source="/elsewhere", type="com.example.other", specversion="1.0", data={})
    with pytest.raises(ValueError, match="not a Waymark event"):
        WaymarkEvent.from_cloudevent(foreign)


def test_the_bicep_subscribes_the_function_with_the_cloudevents_schema() -> None:
    tree = parse(SAMPLE / "subscription.bicep")
    assert problems(tree) == []
    source = (SAMPLE / "subscription.bicep").read_text()
    assert "eventDeliverySchema: 'CloudEventSchemaV1_0'" in source
    assert "endpointType: 'AzureFunction'" in source
    assert "param functionName string = 'waymark_events'" in source  # the function's name in function_app.py
    resources = [text(node) for node in walk(tree.root_node) if node.type == "resource_declaration"]
    assert any("Microsoft.EventGrid/topics/eventSubscriptions@" in r for r in resources)
    assert any("Microsoft.EventGrid/topics@" in r and "existing" in r for r in resources)
