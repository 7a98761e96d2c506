"""The HTTP API (FastAPI). Others use `create_app` and, to build one, `Authenticator`."""

from engine.api.app import create_app
from engine.api.auth import Authenticator

__all__ = ["Authenticator", "create_app"]
