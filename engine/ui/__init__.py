"""The operator dashboard, served by the API's app under `/ui` (docs/dashboard.md).

Others use `add_routes` (what `create_app` calls) or, to host it elsewhere, `create_dashboard`. Everything else
in the package is internal: sessions, the security checks, the diagram layout, the timeline wording.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.ui.dashboard import create_dashboard
from engine.ui.pages import SESSION_COOKIE

if TYPE_CHECKING:
    from fastapi import FastAPI

    from engine.api.context import ApiContext

__all__ = ["MOUNT", "SESSION_COOKIE", "add_routes", "create_dashboard"]

MOUNT = "/ui"


def add_routes(app: FastAPI, ctx: ApiContext) -> None:
    """Mount the dashboard at `/ui` (outside the OpenAPI document, which describes the API only)."""
    app.mount(MOUNT, create_dashboard(ctx), name="ui")
