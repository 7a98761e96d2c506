"""The front door: `/` sends a browser to the dashboard, and `/docs` (Swagger UI) and `/redoc` (ReDoc) read the
OpenAPI document with their scripts and styles served from here, so they work with no network at all.

The assets come from the `fastapi-offline` package (pinned), which ships the Swagger UI and ReDoc bundles as
package data; only its files are used, not its app factory. They are served under `/docs/assets/`.
"""

from __future__ import annotations

from enum import Enum
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def assets_directory() -> Path:
    """Where the installed `fastapi-offline` keeps `swagger-ui-bundle.js`, `swagger-ui.css` and
    `redoc.standalone.js`."""
    return Path(str(files("fastapi_offline") / "static"))


def add_routes(app: FastAPI, *, dashboard: str) -> None:
    """`/` → the dashboard (mounted at `dashboard`, e.g. `/ui`), `/docs`, `/docs/oauth2-redirect`, `/redoc` and
    their assets. The app must be created with `docs_url=None, redoc_url=None` (FastAPI's own pages load their
    assets from a CDN)."""
    tags: list[str | Enum] = ["front door"]
    favicon = f"{dashboard}/static/favicon.svg"
    app.mount(ASSETS, StaticFiles(directory=assets_directory()), name="docs-assets")

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/", include_in_schema=False, tags=tags)
    async def front(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{root(request)}{dashboard}/", status_code=302)

    @app.get("/docs", include_in_schema=False, tags=tags)
    async def swagger_ui(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_swagger_ui_html(openapi_url=f"{prefix}{app.openapi_url}", title=f"{app.title} API - Swagger UI",
                                   oauth2_redirect_url=f"{prefix}/docs/oauth2-redirect",
                                   swagger_js_url=f"{prefix}{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{prefix}{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{prefix}{favicon}")

    @app.get("/docs/oauth2-redirect", include_in_schema=False, tags=tags)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False, tags=tags)
    async def redoc(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_redoc_html(openapi_url=f"{prefix}{app.openapi_url}", title=f"{app.title} API - ReDoc",
                              redoc_js_url=f"{prefix}{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{prefix}{favicon}", with_google_fonts=False)
