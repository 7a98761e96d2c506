"""A Waymark change-feed subscriber as an Azure Functions app (Python v2 programming model).

    waymark_events     Event Grid trigger: each Waymark CloudEvent (subscription with the CloudEvents 1.0 schema,
                       subscription.bicep) goes to the projection; a redelivery changes nothing
    instance_view      GET /api/instances/{tenant}/{instance}: the projected instance (404 before its first event)

App settings: `PROJECTION_STORAGE` (a storage connection string; default `AzureWebJobsStorage`) and
`PROJECTION_TABLE` (default `waymarkprojection`). An exception makes Event Grid retry the delivery (with its
backoff, then the subscription's dead-letter destination): the projection is idempotent, so that is safe.
"""

from __future__ import annotations

import json
import logging
import os

import azure.functions as func

if __package__:  # imported from the repository (the tests)
    from .projection import Projection, WaymarkEvent
else:  # run by the Functions host: this folder is the app's root
    from projection import Projection, WaymarkEvent  # type: ignore[no-redef]

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("waymark.subscriber")

_projection: Projection | None = None


def projection() -> Projection:
    """One table client per process (Azure SDK guidance), made on first use."""
    global _projection
    if _projection is None:
        connection = os.environ.get("PROJECTION_STORAGE") or os.environ["AzureWebJobsStorage"]  # noqa: SIM112
        _projection = Projection.from_connection_string(connection,
                                                        os.environ.get("PROJECTION_TABLE", "waymarkprojection"))
    return _projection


@app.function_name("waymark_events")
@app.event_grid_trigger(arg_name="event")
def waymark_events(event: func.CloudEvent) -> None:
    received = WaymarkEvent.from_cloudevent(event)
    applied = projection().apply(received)
    log.info("%s %s", "applied" if applied else "duplicate", received.id,
             extra={"tenant": received.tenant, "instanceId": received.instance_id, "sequence": received.sequence})


@app.function_name("instance_view")
@app.route(route="instances/{tenant}/{instance}", methods=["GET"])
def instance_view(req: func.HttpRequest) -> func.HttpResponse:
    view = projection().view(req.route_params["tenant"], req.route_params["instance"])
    if view is None:
        return func.HttpResponse(json.dumps({"error": "no event of this instance yet"}), status_code=404,
                                 mimetype="application/json")
    return func.HttpResponse(json.dumps(view), mimetype="application/json")
