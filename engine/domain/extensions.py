"""The ports of conditions and actions, and the registry that maps a `type` to its implementation.

Python code may register its own condition and action types; a definition naming a type that is
not registered is invalid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import cel

from engine.domain.expressions import UNANSWERED, Expression, pruned


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    json_body: Any
    timeout: float


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: Any  # parsed JSON, or None when the body is not JSON
    headers: Mapping[str, str] = field(default_factory=dict)


class HttpTransportError(Exception):
    """The request did not get a response (connection refused, timeout, …)."""


class HttpPort(Protocol):
    """How the domain calls external services. The service layer injects an httpx implementation."""

    def send(self, request: HttpRequest) -> HttpResponse: ...


class NoHttp:
    """The HTTP port of an engine that has none configured: every call fails (and faults)."""

    def send(self, request: HttpRequest) -> HttpResponse:
        raise HttpTransportError("no HTTP client is configured for this engine")


@dataclass(frozen=True)
class Services:
    """What conditions and actions may use from outside the domain."""

    http: HttpPort = field(default_factory=NoHttp)
    sleep: Callable[[float], None] = time.sleep
    log: Callable[[str, Mapping[str, Any]], None] = lambda message, fields: None
    # The most bytes of JSON of a trigger's content an ignored or rejected trigger's event keeps whole (audit.py).
    audit_content_limit: int = 32_768


_NO_TRIGGER: dict[str, Any] = {"id": "", "topic": "", "content": {}}


class Scope:
    """What an expression sees while one command is processed. `context` changes as actions run.

    Each set of variables is converted to CEL once and reused until `instance` or `context` is replaced
    (assign a new dict; never mutate one in place).
    """

    __slots__ = ("_context", "_instance", "_prepared", "sequence", "services", "trigger")

    def __init__(self, instance: dict[str, Any], context: dict[str, Any], trigger: dict[str, Any] | None,
                 sequence: int, services: Services) -> None:
        self._instance = instance
        self._context = context
        self.trigger = trigger if trigger is not None else _NO_TRIGGER
        self.sequence = sequence  # the sequence the commit being decided will start at
        self.services = services
        self._prepared: dict[Expression, cel.Context] = {}

    @property
    def instance(self) -> dict[str, Any]:
        return self._instance

    @instance.setter
    def instance(self, value: dict[str, Any]) -> None:
        self._instance = value
        self._prepared.clear()

    @property
    def context(self) -> dict[str, Any]:
        return self._context

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._context = value
        self._prepared.clear()

    def activation(self) -> dict[str, Any]:
        return {"instance": self._instance, "context": self._context, "trigger": self.trigger}

    def evaluate(self, expression: Expression, where: str) -> Any:
        walk = expression.walk
        if walk is not None:
            answer = walk.answer(self._instance, self._context, self.trigger)
            if answer is not UNANSWERED:
                return answer
        if expression.depth:
            expression.check_budget(self.activation(), where=where)
        prepared = self._prepared.get(expression)
        if prepared is None:
            full = self.activation()
            prepared = self._prepared[expression] = expression.prepare(
                {name: pruned(full[name], tree) for name, tree in expression.paths.items()})
        return expression.evaluate(prepared, where=where)


@dataclass(frozen=True, slots=True)
class ContextChange:
    """Top-level keys to set (merge) and to remove from the instance context."""

    set: Mapping[str, Any] = field(default_factory=dict)
    remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.set and not self.remove


class Condition(Protocol):
    def holds(self, scope: Scope, where: str) -> bool: ...


class Action(Protocol):
    def run(self, scope: Scope, where: str) -> ContextChange: ...


class SpecProblems(Exception):
    """Raised by a factory for a spec it cannot build; each item is (relative path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


ConditionFactory = Callable[[Mapping[str, Any]], Condition]
ActionFactory = Callable[[Mapping[str, Any]], Action]


class Registry:
    """Condition and action types by name. `default_registry()` has the built-in ones.

    A type registered from Python may come with the JSON Schema of its spec (`schema`, an object schema whose
    properties include `type`); the published definition schema then checks it like a built-in one. Without one,
    the schema lets any object with that `type` through and the factory alone checks it.
    """

    def __init__(self) -> None:
        self.conditions: dict[str, ConditionFactory] = {}
        self.actions: dict[str, ActionFactory] = {}
        self.condition_schemas: dict[str, Mapping[str, Any] | None] = {}
        self.action_schemas: dict[str, Mapping[str, Any] | None] = {}

    def condition(self, type_name: str, factory: ConditionFactory, *,
                  schema: Mapping[str, Any] | None = None) -> None:
        self.conditions[type_name] = factory
        self.condition_schemas[type_name] = schema

    def action(self, type_name: str, factory: ActionFactory, *, schema: Mapping[str, Any] | None = None) -> None:
        self.actions[type_name] = factory
        self.action_schemas[type_name] = schema

    def copy(self) -> Registry:
        other = Registry()
        other.conditions = dict(self.conditions)
        other.actions = dict(self.actions)
        other.condition_schemas = dict(self.condition_schemas)
        other.action_schemas = dict(self.action_schemas)
        return other
