"""The change feed over HTTP: the pull feed and webhook subscriptions.

    GET    /tenants/{tenant}/feed?after=&limit=            CloudEvents batch, in commit order
    GET    /tenants/{tenant}/subscriptions                 every subscription (API, definitions, configuration)
    PUT    /tenants/{tenant}/subscriptions/{name}          create or replace (handshake: active or pending)
    GET    /tenants/{tenant}/subscriptions/{name}
    DELETE /tenants/{tenant}/subscriptions/{name}
    POST   /tenants/{tenant}/subscriptions/{name}/pause
    POST   /tenants/{tenant}/subscriptions/{name}/resume   handshake again, then the backlog is delivered

Who may call is settled before these run (the app's AuthMiddleware covers every route with a `{tenant}`); a host that
has no such middleware passes its own dependencies to `feed_router`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.params import Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from engine.api.context import AUTH_PROBLEMS, problem_responses
from engine.api.problems import ApiProblem
from engine.feed.changefeed import ChangeFeed
from engine.feed.cloudevents import ALL_TYPES, BATCH_CONTENT_TYPE
from engine.feed.subscriptions import InvalidSubscription, Subscription, TooManySubscriptions
from engine.feed.webhook import DestinationRefused

__all__ = ["NEXT_POSITION_HEADER", "SubscriptionRequest", "SubscriptionView", "feed_router"]

NEXT_POSITION_HEADER = "Waymark-Next-Position"
MAX_FEED_LIMIT = 1000


class ManagedIdentityAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["managedIdentity"] = Field(description="The app's managed identity (the only kind).")
    audience: str = Field(min_length=1, max_length=512, pattern=r"^\S+$",
                          description="The Entra resource or application ID URI the token is for.")


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"endpoint": "https://dashboard.example/hooks/waymark", "types": ["io.waymark.workflow.instance.faulted"],
         "secret": "a-long-random-secret-for-hmac", "mode": "structured"}]})

    endpoint: str = Field(max_length=2048, description="Absolute http(s) URL. It must consent to the CloudEvents "
                                                       "webhook handshake (OPTIONS) to become active.")
    types: list[str] | None = Field(None, max_length=len(ALL_TYPES),
                                    description="CloudEvent types to receive; absent or null: every type.")
    secret: str | None = Field(None, min_length=16, max_length=512,
                               description="HMAC-SHA256 key of the `X-Waymark-Signature` header; never shown again.")
    mode: Literal["structured", "binary"] = Field("structured", description="CloudEvents HTTP content mode.")
    auth: ManagedIdentityAuth | None = Field(None, description="Send each event (and the handshake) with "
                                                               "`Authorization: Bearer` and an Entra token of the "
                                                               "app's managed identity for `audience`.")


class SubscriptionView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "dashboard", "endpoint": "https://dashboard.example/hooks/waymark", "types": None,
         "mode": "structured", "source": "api", "kind": "webhook", "workflowId": None, "hasSecret": True,
         "status": "active", "consecutiveFailures": 0, "lastError": None, "lastErrorAt": None, "backlogFrom": None,
         "createdAt": "2025-01-01T12:00:00.000000Z", "updatedAt": "2025-01-01T12:00:00.000000Z"}]})

    name: str
    endpoint: str
    types: list[str] | None
    mode: str
    source: str = Field(description="api, definition (a workflow's eventSubscriptions), static (configuration) "
                                    "or tenant (the tenant's Event Grid topic)")
    kind: str = Field(description="webhook or eventgrid")
    workflowId: str | None
    hasSecret: bool
    auth: ManagedIdentityAuth | None = None
    status: str = Field(description="pending (no consent yet), active, paused (resume to receive the backlog) or "
                                    "gone (the endpoint answered 410)")
    consecutiveFailures: int
    lastError: str | None
    lastErrorAt: str | None
    backlogFrom: int | None = Field(description="The lowest feed position still owed to it (while paused)")
    pausedAt: str | None = Field(None, description="When it was last paused")
    resumeAt: str | None = Field(None, description="Paused by failures: when it resumes by itself (null: paused by "
                                                   "hand, or not paused)")
    pauses: int = Field(0, description="Pauses by failures in a row; each lasts twice as long as the one before")
    createdAt: str
    updatedAt: str


class SubscriptionList(BaseModel):
    items: list[SubscriptionView]


def _path(tenant: str, name: str) -> str:
    return f"/tenants/{quote(tenant, safe='')}/subscriptions/{quote(name, safe='')}"


def _view(subscription: Subscription, status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(subscription.to_public(), status_code=status, headers=headers or None)


def feed_router(feed: ChangeFeed, *, dependencies: Sequence[Depends] = ()) -> APIRouter:
    api = APIRouter(tags=["change feed"], dependencies=list(dependencies))

    @api.get("/tenants/{tenant}/feed", response_class=Response,
             responses={200: {"description": "CloudEvents in commit order (JSON batch format). The position to "
                                             f"continue after is in `{NEXT_POSITION_HEADER}` and in the `Link` "
                                             "header (rel=next); an empty array means nothing new yet.",
                              "content": {BATCH_CONTENT_TYPE: {"schema": {"type": "array",
                                                                          "items": {"type": "object"}}}}},
                        **problem_responses(*AUTH_PROBLEMS, 422)},
             summary="Pull the change feed: CloudEvents after a position")
    def read_feed(tenant: str,
                  after: Annotated[int, Query(ge=0, le=2**62, description="Feed position to read after (0: from "
                                                                          "the start)")] = 0,
                  limit: Annotated[int, Query(ge=1, le=MAX_FEED_LIMIT, description="At most this many commits (a "
                                                                                   "commit's events are never "
                                                                                   "split)")] = 100) -> Response:
        page = feed.read(tenant, after=after, limit=limit)
        following = f"/tenants/{quote(tenant, safe='')}/feed?after={page.next_position}&limit={limit}"
        return Response(page.body(), media_type=BATCH_CONTENT_TYPE,
                        headers={NEXT_POSITION_HEADER: str(page.next_position), "Link": f'<{following}>; rel="next"'})

    @api.get("/tenants/{tenant}/subscriptions", response_model=SubscriptionList,
             responses=problem_responses(*AUTH_PROBLEMS), summary="Every subscription of the tenant, with its state")
    async def list_subscriptions(tenant: str) -> JSONResponse:
        found = await run_in_threadpool(feed.subscriptions, tenant)
        return JSONResponse({"items": [s.to_public() for s in found]})

    @api.put("/tenants/{tenant}/subscriptions/{name}", response_model=SubscriptionView,
             responses={200: {"description": "Replaced", "model": SubscriptionView},
                        201: {"description": "Created", "model": SubscriptionView},
                        **problem_responses(*AUTH_PROBLEMS, 400, 409, 413, 422)},
             summary="Subscribe a webhook: the endpoint must consent to the handshake to become active")
    def put_subscription(tenant: str, name: str, body: SubscriptionRequest) -> JSONResponse:
        try:
            subscription, created = feed.subscribe(tenant, name, endpoint=body.endpoint, types=body.types,
                                                   secret=body.secret, mode=body.mode,
                                                   auth_audience=body.auth.audience if body.auth else None)
        except InvalidSubscription as e:
            raise ApiProblem(422, "Invalid subscription", str(e), slug="invalid-subscription",
                             errors=[{"path": "body", "message": problem} for problem in e.problems]) from None
        except DestinationRefused as e:
            raise ApiProblem(422, "Destination refused", str(e), slug="destination-refused",
                             errors=[{"path": "body.endpoint", "message": e.reason}]) from None
        except TooManySubscriptions as e:
            raise ApiProblem(409, "Subscription limit reached", f"{e} (at most {e.limit} subscriptions a tenant).",
                             slug="subscription-limit", limit=e.limit) from None
        if created:
            return _view(subscription, 201, Location=_path(tenant, name))
        return _view(subscription)

    @api.get("/tenants/{tenant}/subscriptions/{name}", response_model=SubscriptionView,
             responses=problem_responses(*AUTH_PROBLEMS), summary="One subscription and its state")
    async def get_subscription(tenant: str, name: str) -> JSONResponse:
        return _view(await run_in_threadpool(feed.subscription, tenant, name))

    @api.delete("/tenants/{tenant}/subscriptions/{name}", status_code=204, response_class=Response,
                responses=problem_responses(*AUTH_PROBLEMS, 422),
                summary="Unsubscribe (only API subscriptions; the others change where they are configured)")
    async def delete_subscription(tenant: str, name: str) -> Response:
        try:
            await run_in_threadpool(feed.unsubscribe, tenant, name)
        except InvalidSubscription as e:
            raise ApiProblem(422, "Not an API subscription", str(e), slug="not-an-api-subscription") from None
        return Response(status_code=204)

    @api.post("/tenants/{tenant}/subscriptions/{name}/pause", response_model=SubscriptionView,
              responses=problem_responses(*AUTH_PROBLEMS),
              summary="Pause: events for it wait (its backlog) until it is resumed")
    async def pause_subscription(tenant: str, name: str) -> JSONResponse:
        return _view(await run_in_threadpool(feed.pause, tenant, name))

    @api.post("/tenants/{tenant}/subscriptions/{name}/resume", response_model=SubscriptionView,
              responses=problem_responses(*AUTH_PROBLEMS),
              summary="Resume: handshake again, then deliver the backlog in the background")
    def resume_subscription(tenant: str, name: str) -> JSONResponse:
        return _view(feed.resume(tenant, name))

    return api
