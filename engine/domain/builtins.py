"""The built-in condition types (`expression`, `http`) and action types (`set-context`, `log`, `http`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.domain.errors import ExecutionError
from engine.domain.expressions import CompileError, Expression
from engine.domain.extensions import (
    ContextChange,
    HttpRequest,
    HttpResponse,
    HttpTransportError,
    Registry,
    Scope,
    SpecProblems,
)

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _expression(spec: Mapping[str, Any], key: str, problems: list[tuple[str, str]]) -> Expression | None:
    source = spec.get(key)
    if source is None:
        problems.append((key, "is required"))
        return None
    try:
        return Expression(source)
    except CompileError as e:
        problems.append((key, f"does not compile: {e}"))
        return None


def _raise_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise SpecProblems(problems)


class ExpressionCondition:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        problems: list[tuple[str, str]] = []
        expression = _expression(spec, "expression", problems)
        _raise_if(problems)
        assert expression is not None
        self.expression = expression

    def holds(self, scope: Scope, where: str) -> bool:
        value = scope.evaluate(self.expression, where)
        if not isinstance(value, bool):
            raise ExecutionError(where, "TypeMismatch", f"condition `{self.expression.source}` gave "
                                 f"{type(value).__name__}, not a boolean")
        return value


class SetContextAction:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        problems: list[tuple[str, str]] = []
        values = spec.get("values", {})
        remove = spec.get("remove", [])
        self.values: dict[str, Expression] = {}
        if not isinstance(values, dict):
            problems.append(("values", "must be an object of context key to CEL expression"))
        else:
            for key, source in values.items():
                try:
                    self.values[key] = Expression(source)
                except CompileError as e:
                    problems.append((f"values.{key}", f"does not compile: {e}"))
        if not values and not remove:
            problems.append(("values", "a set-context action needs `values` or `remove`"))
        if not isinstance(remove, list) or not all(isinstance(k, str) for k in remove):
            problems.append(("remove", "must be a list of context keys"))
            remove = []
        _raise_if(problems)
        self.remove = tuple(remove)

    def run(self, scope: Scope, where: str) -> ContextChange:
        computed = {key: scope.evaluate(expr, f"{where}.values.{key}") for key, expr in self.values.items()}
        return ContextChange(set=computed, remove=self.remove)


class LogAction:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        problems: list[tuple[str, str]] = []
        self.message = _expression(spec, "message", problems)
        _raise_if(problems)

    def run(self, scope: Scope, where: str) -> ContextChange:
        assert self.message is not None
        text = scope.evaluate(self.message, where)
        scope.services.log(str(text), {"instanceId": scope.instance["id"], "where": where})
        return ContextChange()


class _HttpCall:
    """What the `http` condition and action share: building the request, retries with backoff."""

    def __init__(self, spec: Mapping[str, Any], *, default_method: str) -> None:
        problems: list[tuple[str, str]] = []
        self.method = str(spec.get("method", default_method)).upper()
        if self.method not in HTTP_METHODS:
            problems.append(("method", f"must be one of {', '.join(sorted(HTTP_METHODS))}"))
        self.url = spec.get("url")
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            problems.append(("url", "must be an absolute http(s) URL"))
        self.body = _expression(spec, "body", problems) if "body" in spec else None
        headers = spec.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and "\n" not in k + v and "\r" not in k + v
            for k, v in headers.items()
        ):
            problems.append(("headers", "must be an object of header name to string value, without line breaks"))
            headers = {}
        self.headers: dict[str, str] = dict(headers)
        self.timeout = _number(spec, "timeoutSeconds", 10.0, problems, low=0.1, high=300.0)
        self.retries = int(_number(spec, "retries", 2, problems, low=0, high=10, integer=True))
        self.backoff = _number(spec, "backoffSeconds", 0.5, problems, low=0.0, high=60.0)
        _raise_if(problems)

    def call(self, scope: Scope, where: str) -> HttpResponse:
        body = scope.evaluate(self.body, f"{where}.body") if self.body is not None else None
        headers = {**self.headers, "Idempotency-Key": f"{scope.instance['id']}:{scope.sequence}"}
        assert isinstance(self.url, str)
        request = HttpRequest(self.method, self.url, headers, body, self.timeout)
        attempt = 0
        while True:
            try:
                response = scope.services.http.send(request)
            except HttpTransportError as e:
                if attempt >= self.retries:
                    raise ExecutionError(where, "HttpTransportError", f"{self.method} {self.url}: {e}") from e
            else:
                if response.status not in RETRYABLE_STATUSES or attempt >= self.retries:
                    return response
            scope.services.sleep(self.backoff * (2**attempt))
            attempt += 1


def _number(spec: Mapping[str, Any], key: str, default: float, problems: list[tuple[str, str]], *,
            low: float, high: float, integer: bool = False) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high or (
            integer and value != int(value)):
        kind = "a whole number" if integer else "a number"
        problems.append((key, f"must be {kind} from {low:g} to {high:g}"))
        return default
    return float(value)


class HttpCondition(_HttpCall):
    """True only on a 2xx whose JSON body is `true`; false on another 2xx or a 4xx; an error faults."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__(spec, default_method="POST")

    def holds(self, scope: Scope, where: str) -> bool:
        response = self.call(scope, where)
        if 200 <= response.status < 300:
            return response.body is True
        if 400 <= response.status < 500:
            return False
        raise ExecutionError(where, "HttpError", f"{self.method} {self.url} answered {response.status}")


class HttpAction(_HttpCall):
    """Calls a service; a JSON answer `{"setContext": {…}, "removeContext": […]}` updates the context. The answer
    of a Marain.Workflow external service (`{"contextValuesToSetOrAdd": {…}, "contextValuesToRemove": […]}`) is
    read the same way, so a service written for Marain's InvokeExternalServiceAction works unchanged."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__(spec, default_method="POST")

    def run(self, scope: Scope, where: str) -> ContextChange:
        response = self.call(scope, where)
        if not 200 <= response.status < 300:
            raise ExecutionError(where, "HttpError", f"{self.method} {self.url} answered {response.status}")
        body = response.body
        if not isinstance(body, dict):
            return ContextChange()
        to_set = body.get("setContext", body.get("contextValuesToSetOrAdd")) or {}
        to_remove = body.get("removeContext", body.get("contextValuesToRemove")) or []
        if not isinstance(to_set, dict) or not isinstance(to_remove, list):
            raise ExecutionError(where, "HttpResponseInvalid",
                                 "`setContext` must be an object and `removeContext` a list of keys")
        return ContextChange(set=to_set, remove=tuple(str(k) for k in to_remove))


def default_registry() -> Registry:
    registry = Registry()
    registry.condition("expression", ExpressionCondition)
    registry.condition("http", HttpCondition)
    registry.action("set-context", SetContextAction)
    registry.action("log", LogAction)
    registry.action("http", HttpAction)
    return registry
