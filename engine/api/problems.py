"""Every error response of the API is `application/problem+json` (RFC 9457), built here and only here.

Each `WaymarkError` type maps to one status in `_ERRORS` (the most specific class in the exception's MRO wins).
Errors the HTTP layer raises itself (auth, limits, a bad query) are `ApiProblem`s. FastAPI's own 404/405/422 and
anything unexpected are turned into problems by the handlers `install` registers, so no response of the API
is ever HTML or a bare `{"detail": …}`.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from engine.domain.errors import (
    CommandTooLarge,
    ConcurrencyConflict,
    DefinitionChanged,
    DuplicateTrigger,
    InstanceAlreadyExists,
    InstanceNotFound,
    InvalidCommand,
    InvalidDefinition,
    MigrationRefused,
    NotFound,
    RecoveryRefused,
    SchedulingRefused,
    StoreUnavailable,
    TenantNotFound,
    TimerNotFound,
    WaymarkError,
    WorkflowNotFound,
)
from engine.tenants import InvalidTenantId, TenantAlreadyExists
from engine.tenants.config import InvalidTenantConfig

__all__ = ["PROBLEM_JSON", "ApiProblem", "install", "problem_for", "problem_response"]

log = logging.getLogger("waymark.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:waymark:problem:"
RETRY_AFTER_SECONDS = 1

# error type -> (status, type slug, title). The one place a domain error becomes an HTTP status.
_ERRORS: dict[type[WaymarkError], tuple[int, str, str]] = {
    TenantNotFound: (404, "tenant-not-found", "Tenant not found"),
    WorkflowNotFound: (404, "workflow-not-found", "Workflow not found"),
    InstanceNotFound: (404, "instance-not-found", "Instance not found"),
    NotFound: (404, "not-found", "Not found"),
    InvalidDefinition: (422, "invalid-definition", "Invalid workflow definition"),
    DefinitionChanged: (412, "definition-changed", "The definition changed"),
    InvalidTenantId: (422, "invalid-tenant-id", "Invalid tenant id"),
    InvalidTenantConfig: (422, "invalid-tenant-config", "Invalid tenant configuration"),
    InstanceAlreadyExists: (409, "instance-exists", "Instance already exists"),
    TenantAlreadyExists: (409, "tenant-exists", "Tenant already exists"),
    ConcurrencyConflict: (409, "concurrency-conflict", "Concurrent change"),
    DuplicateTrigger: (409, "duplicate-trigger", "Trigger already recorded"),
    StoreUnavailable: (503, "store-unavailable", "Storage unavailable"),
    RecoveryRefused: (409, "recovery-refused", "Not possible in the instance's status"),
    SchedulingRefused: (409, "scheduling-refused", "Not possible for this instance"),
    MigrationRefused: (409, "migration-refused", "Migration refused"),
    TimerNotFound: (404, "timer-not-found", "Scheduled trigger not found"),
    InvalidCommand: (422, "invalid-command", "Invalid request"),
    CommandTooLarge: (413, "command-too-large", "Command too large for the queue"),
}

# Attributes of an error that are worth handing to a client as extension members of the problem.
_MEMBERS = {"tenant": "tenant", "instance_id": "instanceId", "workflow_id": "workflowId", "version": "version",
            "trigger_id": "triggerId", "limit": "limit", "size": "size"}


class ApiProblem(StarletteHTTPException):
    """A problem the HTTP layer itself reports (unauthorised, forbidden, too large, a bad query parameter).

    A subclass of Starlette's HTTPException so that FastAPI lets it through while it reads a request body.
    """

    def __init__(self, status: int, title: str, detail: str, *, slug: str | None = None,
                 headers: Mapping[str, str] | None = None, **members: Any) -> None:
        super().__init__(status, detail, dict(headers) if headers else None)
        self.title = title
        self.slug = slug or title.lower().replace(" ", "-")
        self.members = members


def problem_response(status: int, title: str, detail: str, *, slug: str, instance: str | None = None,
                     headers: Mapping[str, str] | None = None, **members: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if instance is not None:
        body["instance"] = instance
    body.update({key: value for key, value in members.items() if value is not None})
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None,
                        media_type=PROBLEM_JSON)


def problem_for(error: BaseException, instance: str | None = None) -> JSONResponse:
    """The problem response of any exception: ApiProblem, WaymarkError, or (500) anything else."""
    if isinstance(error, ApiProblem):
        return problem_response(error.status_code, error.title, str(error.detail), slug=error.slug,
                                instance=instance, headers=error.headers, **error.members)
    if isinstance(error, WaymarkError):
        for cls in type(error).__mro__:
            mapped = _ERRORS.get(cls)
            if mapped is not None:
                return _waymark_problem(error, mapped, instance)
    log.error("unexpected error answering %s", instance, exc_info=error)
    return problem_response(500, "Internal error", "The server failed unexpectedly; the error has been logged.",
                            slug="internal-error", instance=instance)


def _waymark_problem(error: WaymarkError, mapped: tuple[int, str, str], instance: str | None) -> JSONResponse:
    status, slug, title = mapped
    members = {name: getattr(error, attr) for attr, name in _MEMBERS.items() if getattr(error, attr, None) is not None}
    headers: dict[str, str] = {}
    detail = str(error)
    if isinstance(error, InvalidDefinition | MigrationRefused):
        members["errors"] = [{"path": p.path, "message": p.message} for p in error.problems]
    elif isinstance(error, DefinitionChanged) and error.version:
        headers["ETag"] = f'"{error.version}"'  # the latest: what to GET, merge with, and send as If-Match
    elif isinstance(error, InvalidTenantConfig):
        members["errors"] = [{"path": "body.config", "message": problem} for problem in error.problems]
    elif isinstance(error, StoreUnavailable):
        # The driver's message names files and hosts: logged for the operator, not shown to the client.
        log.warning("storage unavailable answering %s: %s", instance, error)
        detail = f"The {error.store} cannot be reached right now; nothing was changed. Retry shortly."
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return problem_response(status, title, detail, slug=slug, instance=instance, headers=headers, **members)


def validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """pydantic errors as `{path, message}`, the path like `body.context` or `body.subjects[0]`."""
    listed = []
    for error in errors:
        path = ""
        for part in error.get("loc", ()):
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += ("." if path else "") + str(part)
        message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        listed.append({"path": path or "body", "message": message})
    return listed


async def _on_waymark_error(request: Request, error: Exception) -> JSONResponse:
    return problem_for(error, request.url.path)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path (and OPTIONS), for `Allow`. Starlette names only the methods
    of the first route whose path matches, so a path served by three routes (PUT, GET, DELETE) would claim one.
    Asked of each route as routing asks (`matches`), so routes of included routers count too."""
    methods = [method for method in _METHODS
               if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
                      for route in request.app.router.routes)]
    return [*methods, "OPTIONS"] if methods else []


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def _on_http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    path = request.url.path
    if isinstance(error, ApiProblem):
        return problem_for(error, path)
    status = error.status_code
    headers = dict(error.headers or {})
    if status == 404:
        return problem_response(404, "Not found", f"No route matches {request.method} {path}.", slug="no-route",
                                instance=path, headers=headers)
    if status == 405:
        methods = allowed_methods(request)
        if request.method == "OPTIONS" and methods:
            return Response(status_code=204, headers={"Allow": ", ".join(methods)})
        allowed = ", ".join(methods) or headers.get("allow") or headers.get("Allow") or ""
        headers = {key: value for key, value in headers.items() if key.lower() != "allow"}
        if allowed:
            headers["Allow"] = allowed
        return problem_response(405, "Method not allowed",
                                f"{request.method} is not allowed on {path}" + (f"; allowed: {allowed}." if allowed
                                                                                else "."),
                                slug="method-not-allowed", instance=path, headers=headers)
    try:
        title = http.HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return problem_response(status, title, str(error.detail or title), slug=title.lower().replace(" ", "-"),
                            instance=path, headers=headers)


def is_json_media_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def unsupported_media_type(content_type: str | None) -> ApiProblem:
    shown = (content_type or "").split(";")[0].strip() or "no Content-Type"
    return ApiProblem(415, "Unsupported media type", f"The body must be JSON, sent with `Content-Type: "
                      f"application/json` (got {shown}).", slug="unsupported-media-type")


def malformed_json(reason: str) -> ApiProblem:
    return ApiProblem(400, "Malformed JSON", f"The request body is not JSON: {reason}.", slug="malformed-json")


def invalid_request(errors: Sequence[Any]) -> ApiProblem:
    """422 listing every pydantic error as `{path, message}`."""
    listed = validation_errors(errors)
    detail = "; ".join(f"{e['path']}: {e['message']}" for e in listed[:5])
    if len(listed) > 5:
        detail += f" (and {len(listed) - 5} more)"
    return ApiProblem(422, "Invalid request", f"The request is not valid: {detail}.", slug="invalid-request",
                      errors=listed)


async def _on_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = list(error.errors())
    path = request.url.path
    invalid_json = [e for e in errors if e.get("type") == "json_invalid"]
    if invalid_json:
        reason = (invalid_json[0].get("ctx") or {}).get("error", "JSON decode error")
        position = invalid_json[0].get("loc", ("body",))[-1]
        where = f" at character {position}" if isinstance(position, int) else ""
        return problem_for(malformed_json(f"{reason}{where}"), path)
    content_type = request.headers.get("content-type")
    if not is_json_media_type(content_type) and any(
            tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errors):
        # FastAPI does not parse a body that is not declared JSON (`curl -d` sends a form type by default).
        return problem_for(unsupported_media_type(content_type), path)
    return problem_for(invalid_request(errors), path)


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    return problem_for(error, request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(WaymarkError, _on_waymark_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
