"""Structured logs and traces of command processing (engine/hosting/observability.py).

- Every processing line carries tenant, instance, trigger and sequence (and the message's id and dequeue count),
  rendered as key=value or JSON, for `waymark serve`'s stderr and for the Functions worker's root handlers.
- Spans: one CONSUMER span per command with those attributes; a failure is recorded on it.
- Without an Application Insights connection string nothing is configured and nothing is exported; with one, the
  Azure Monitor distro exports the spans and the `waymark` logs (with their fields) to the ingestion endpoint — a
  local receiver here, in a process of its own (the distro instruments libraries process-wide).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine.domain import Trigger
from engine.hosting import observability
from engine.hosting.azure import UndecodableMessage, process_message
from engine.hosting.runtime import memory_engine
from engine.service.commands import CreateInstance, SendTrigger, to_message
from engine.service.engine import Engine
from tests.functions.harness import ROOT

TENANT = "acme"


@pytest.fixture
def engine(expense_claim: dict[str, Any]) -> Engine:
    made = memory_engine()
    made.catalog.put(TENANT, expense_claim)
    return made


def _create(engine: Engine, claim: str = "claim-1") -> None:
    process_message(engine.processor, to_message(CreateInstance(TENANT, claim, "expense-claim", f"{claim}-create",
                                                                context={"claimant": "Ann"})),
                    message_id="m-1", dequeue_count=1)


def test_processing_lines_carry_tenant_instance_trigger_and_sequence(engine: Engine) -> None:
    stream = io.StringIO()
    undo = observability.configure_logging("info", stream=stream)
    try:
        _create(engine)
        body = to_message(SendTrigger(TENANT, "claim-1", Trigger("update", "claim-1-update", {"amount": 3})))
        process_message(engine.processor, body, message_id="m-2", dequeue_count=2)
        process_message(engine.processor, body, message_id="m-3", dequeue_count=1)  # a redelivery: recorded
    finally:
        undo()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(" INFO waymark.processor: created tenant=acme instanceId=claim-1 "
                             "triggerId=claim-1-create sequence=1 function=process_command messageId=m-1 "
                             "dequeueCount=1")
    assert lines[1].endswith("applied tenant=acme instanceId=claim-1 triggerId=claim-1-update sequence=2 "
                             "function=process_command messageId=m-2 dequeueCount=2")
    assert "trigger recorded already" in lines[2] and "sequence=2 outcome=applied" in lines[2]
    assert logging.getLogger("waymark").propagate is True  # undone


def test_json_lines_and_values_that_need_quoting(engine: Engine) -> None:
    stream = io.StringIO()
    undo = observability.configure_logging("info", stream=stream, json_lines=True)
    try:
        with observability.log_context(subscription="a name with spaces"):
            _create(engine)
    finally:
        undo()
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert {key: record[key] for key in ("level", "logger", "message", "tenant", "instanceId", "triggerId",
                                         "sequence", "messageId", "dequeueCount", "subscription")} == {
        "level": "INFO", "logger": "waymark.processor", "message": "created", "tenant": TENANT,
        "instanceId": "claim-1", "triggerId": "claim-1-create", "sequence": 1, "messageId": "m-1",
        "dequeueCount": 1, "subscription": "a name with spaces"}
    text = observability.StructuredFormatter("%(message)s").format(logging.makeLogRecord(
        {"msg": "m", "subscription": "a b", "tenant": "x=y"}))
    assert text == 'm tenant="x=y" subscription="a b"'


def test_in_the_functions_worker_lines_go_to_the_root_handlers_with_their_fields(engine: Engine) -> None:
    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    keep = Keep()
    root = logging.getLogger()
    root.addHandler(keep)  # as the worker's gRPC handler sits on the root logger
    undo = observability.configure_host_logging("info")
    try:
        _create(engine)
    finally:
        undo()
        root.removeHandler(keep)
    [record] = [r for r in keep.records if r.name == "waymark.processor"]
    assert record.getMessage() == ("created tenant=acme instanceId=claim-1 triggerId=claim-1-create sequence=1 "
                                   "function=process_command messageId=m-1 dequeueCount=1")
    assert record.levelno == logging.INFO and record.tenant == TENANT  # type: ignore[attr-defined]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observability.set_tracer_provider(provider)
    yield exporter
    observability.set_tracer_provider(None)
    provider.shutdown()


def test_each_command_is_a_span_with_its_fields_and_a_failure_is_recorded(engine: Engine,
                                                                           spans: InMemorySpanExporter) -> None:
    _create(engine)
    with pytest.raises(UndecodableMessage):
        process_message(engine.processor, b"not json", message_id="m-9", dequeue_count=5)
    ok, failed = spans.get_finished_spans()
    assert (ok.name, ok.kind) == ("waymark.command", trace.SpanKind.CONSUMER)
    assert dict(ok.attributes or {}) == {
        "waymark.kind": "create", "waymark.tenant": TENANT, "waymark.instance_id": "claim-1",
        "waymark.trigger_id": "claim-1-create", "waymark.message_id": "m-1", "waymark.dequeue_count": 1,
        "waymark.sequence": 1, "waymark.outcome": "created"}
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]
    assert failed.attributes is not None and failed.attributes["waymark.dequeue_count"] == 5


def test_without_a_connection_string_nothing_is_configured_or_exported(engine: Engine) -> None:
    assert observability.configure_tracing(None) is False
    assert observability.configure_tracing("") is False
    assert "azure.monitor.opentelemetry" not in sys.modules  # the exporter is never even loaded
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)  # the API's default: no SDK, no export
    with observability.command_span("waymark.command", tenant=TENANT) as span:
        assert not span.is_recording()
    _create(engine)  # processing is unaffected


class _Ingestion:
    """An Application Insights ingestion endpoint on loopback: keeps every telemetry item posted to it."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        ingestion = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.startswith("/v2.1/track"):
                    ingestion.items.extend(json.loads(body))
                reply = json.dumps({"itemsReceived": 0, "itemsAccepted": 0, "errors": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_EXPORTING = r"""
import json, sys
from opentelemetry import trace
from opentelemetry._logs import get_logger_provider
from engine.hosting import observability
from engine.hosting.azure import process_message
from engine.hosting.runtime import memory_engine
from engine.service.commands import CreateInstance, to_message

undo = observability.configure_host_logging("info")
assert observability.configure_tracing(sys.argv[1]) is True
engine = memory_engine()
engine.catalog.put("acme", json.load(open("samples/expense-claim.json")))
process_message(engine.processor, to_message(CreateInstance("acme", "claim-1", "expense-claim", "claim-1-create",
                                                            context={"claimant": "Ann"})),
                message_id="m-1", dequeue_count=1)
assert trace.get_tracer_provider().force_flush(10_000)
assert get_logger_provider().force_flush(10_000)
"""


def test_with_a_connection_string_spans_and_logs_reach_application_insights() -> None:
    ingestion = _Ingestion()
    try:
        connection = (f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={ingestion.url};"
                      f"LiveEndpoint={ingestion.url}")
        # Every span exported: the distro's default sampler (rate-limited, 5 traces/s) may drop the only one.
        environ = {**os.environ, "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
                   "OTEL_TRACES_SAMPLER": "microsoft.fixed_percentage", "OTEL_TRACES_SAMPLER_ARG": "1.0"}
        done = subprocess.run([sys.executable, "-c", _EXPORTING, connection], cwd=ROOT, env=environ,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        ingestion.close()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for item in ingestion.items:
        by_kind.setdefault(item["name"].rsplit(".", 1)[-1], []).append(item["data"]["baseData"])
    [request] = [r for r in by_kind["Request"] if r["name"] == "waymark.command"]
    assert request["success"] is True
    assert {key: request["properties"][key] for key in ("waymark.tenant", "waymark.instance_id",
                                                        "waymark.trigger_id", "waymark.sequence")} == {
        "waymark.tenant": TENANT, "waymark.instance_id": "claim-1", "waymark.trigger_id": "claim-1-create",
        "waymark.sequence": "1"}
    [message] = [m for m in by_kind["Message"] if m["message"] == "created"]
    assert {key: message["properties"][key] for key in ("tenant", "instanceId", "triggerId", "sequence",
                                                        "messageId")} == {
        "tenant": TENANT, "instanceId": "claim-1", "triggerId": "claim-1-create", "sequence": "1",
        "messageId": "m-1"}
