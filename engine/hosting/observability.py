"""Observability: structured logs and OpenTelemetry traces, the same under `waymark serve` and Azure Functions.

**Logs.** The engine logs with `extra` fields (`tenant`, `instanceId`, `triggerId`, `sequence`, …: see `FIELDS`).
`StructuredFormatter` renders them after the message as `key=value` (or a whole line as JSON), and `log_context`
sets fields for everything logged inside it on this thread (the queue function sets the message id, dequeue
count, tenant, instance and trigger, so every line of one command's processing carries them, the store's and the
processor's included). Two ways to install them:

- `configure_logging(level)` — a process of its own (`waymark serve`): one handler on stderr for the `waymark`
  loggers;
- `configure_host_logging(level)` — inside the Azure Functions Python worker, which owns the root logger and sends
  what reaches it to the host (and so to Application Insights) as plain text: the `waymark` lines are rendered
  with their fields and handed to the root logger's handlers, so the fields are in the text the host keeps.

Both return a function that puts the previous configuration back.

**Traces.** `command_span(...)` wraps the processing of one command in an OpenTelemetry span (through
`opentelemetry-api` only: with no SDK configured it is a no-op and costs nothing). `configure_tracing(connection
string)` configures the Azure Monitor distro (`azure-monitor-opentelemetry`) — traces of our spans, of the Azure
SDK calls and of FastAPI requests, and the `waymark` logs with their fields as custom dimensions — only when an
Application Insights connection string is given; without one nothing is configured and nothing is exported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, TextIO

from opentelemetry import trace

__all__ = [
    "FIELDS",
    "ContextFilter",
    "StructuredFormatter",
    "command_span",
    "configure_host_logging",
    "configure_logging",
    "configure_tracing",
    "log_context",
    "set_tracer_provider",
    "tracer",
]

LOGGER = "waymark"

# The fields a line may carry, in the order they are rendered. The engine passes them as `extra`.
FIELDS: tuple[str, ...] = ("tenant", "instanceId", "triggerId", "sequence", "outcome", "function", "messageId",
                           "dequeueCount", "workflowId", "position", "positions", "subscription", "signal",
                           "breaker", "reason", "parkedId")

_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("waymark_log_context", default=_NO_FIELDS)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every record logged inside this block (on this thread or task) carries `fields` (None values left out),
    unless the call passed the same field itself."""
    token = _context.set({**_context.get(), **{name: value for name, value in fields.items() if value is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Adds the fields of the current `log_context` to a record (a handler filter: it sees every record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None}


def _rendered(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


class StructuredFormatter(logging.Formatter):
    """`{template} key=value …` with the fields of `FIELDS` the record has, or (`json_lines`) one JSON object with
    time, level, logger, message, the fields and the exception."""

    def __init__(self, template: str = "%(asctime)s %(levelname)s %(name)s: %(message)s", *,
                 json_lines: bool = False) -> None:
        super().__init__(template)
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        if self.json_lines:
            line: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                                    "message": record.getMessage(), **fields}
            if record.exc_info:
                line["exception"] = self.formatException(record.exc_info)
            return json.dumps(line, default=str, ensure_ascii=False)
        text = super().format(record)
        if not fields:
            return text
        first, newline, rest = text.partition("\n")  # fields on the message line, before any traceback
        rendered = " ".join(f"{name}={_rendered(value)}" for name, value in fields.items())
        return f"{first} {rendered}{newline}{rest}"


def _install(handler: logging.Handler, level: str) -> Callable[[], None]:
    """`handler` in place of the one a previous call installed (others, such as the log exporter's, stay)."""
    logger = logging.getLogger(LOGGER)
    replaced = [h for h in logger.handlers if getattr(h, "_waymark", False)]
    before = (logger.level, logger.propagate)
    handler.addFilter(ContextFilter())
    handler._waymark = True  # type: ignore[attr-defined]
    for old in replaced:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False

    def undo() -> None:
        logger.removeHandler(handler)
        for old in replaced:
            logger.addHandler(old)
        logger.setLevel(before[0])
        logger.propagate = before[1]

    return undo


def configure_logging(level: str = "info", *, stream: TextIO | None = None,
                      json_lines: bool = False) -> Callable[[], None]:
    """The `waymark` loggers to `stream` (stderr), one line per record with its fields. Returns the undo."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(json_lines=json_lines))
    return _install(handler, level)


class _ToRootHandlers(logging.Handler):
    """Hands each record, its fields rendered into the message, to the root logger's handlers (the Functions
    worker's, which send the text to the host). Time and level are the host's to add."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(StructuredFormatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        rendered = logging.makeLogRecord({**record.__dict__, "msg": text, "args": None, "exc_info": None,
                                          "exc_text": None})
        handlers = logging.getLogger().handlers
        if not handlers and logging.lastResort is not None:
            handlers = [logging.lastResort]
        for handler in handlers:
            if rendered.levelno >= handler.level:
                handler.handle(rendered)


def configure_host_logging(level: str = "info") -> Callable[[], None]:
    """Inside the Functions worker: `waymark` lines, with their fields in the text, to the root's handlers."""
    return _install(_ToRootHandlers(), level)


# ---------------------------------------------------------------------------------------------- traces

_provider: trace.TracerProvider | None = None
_configured: str | None = None
_lock = threading.Lock()


def set_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Use `provider` for Waymark's spans instead of the global one (None: the global one again). For tests,
    which cannot reset OpenTelemetry's global provider."""
    global _provider
    _provider = provider


def tracer() -> trace.Tracer:
    return trace.get_tracer(LOGGER, tracer_provider=_provider)


def configure_tracing(connection_string: str | None, *, logger_name: str = LOGGER) -> bool:
    """Export traces (and the `logger_name` logs) to Application Insights when a connection string is given; True
    when configured. Once per process (a second call with the same string does nothing). Without a connection
    string nothing is configured: the spans stay no-ops and nothing leaves the process."""
    global _configured
    if not connection_string:
        return False
    with _lock:
        if _configured is not None:
            if _configured != connection_string:
                logging.getLogger(LOGGER).warning("tracing is configured already, with another connection string")
            return True
        from azure.monitor.opentelemetry import configure_azure_monitor  # heavy: loaded only when exporting

        configure_azure_monitor(connection_string=connection_string, logger_name=logger_name)
        for handler in logging.getLogger(logger_name).handlers:
            handler.addFilter(ContextFilter())  # the log exporter's records carry the context fields too
        _configured = connection_string
    return True


@contextlib.contextmanager
def command_span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A CONSUMER span around the processing of one command; attributes with None values are left out. An
    exception leaving the block is recorded on the span, which ends with status ERROR."""
    chosen = {f"waymark.{key}": value for key, value in attributes.items() if value is not None}
    with tracer().start_as_current_span(name, kind=trace.SpanKind.CONSUMER, attributes=chosen) as span:
        yield span
