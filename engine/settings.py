"""Configuration of a Waymark server, from `WAYMARK_*` environment variables (and `waymark serve` flags).

Every setting is documented in docs/service.md; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYMARK_", extra="ignore", validate_default=True)

    data_dir: Path = Field(Path(".waymark"), description="Where the SQLite files, the secret and the admin key live.")
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on (0: any free port).")
    admin_key: str | None = Field(None, repr=False, min_length=16,
                                  description="The admin key. When unset, one is generated on first start and "
                                              "kept in {data_dir}/admin-key (mode 0600).")
    demo_key: str | None = Field(None, repr=False, min_length=16,
                                 description="The key of the `demo` tenant created on first start (random if unset).")
    secret: str | None = Field(None, repr=False, min_length=16,
                               description="Server secret that tenant keys are hashed with (HMAC-SHA256). When "
                                           "unset, one is generated once into {data_dir}/secret (mode 0600).")
    max_body_bytes: int = Field(262_144, ge=1024, description="Largest request body accepted; larger gets 413.")
    workers: int = Field(2, ge=0, le=64, description="Queue worker threads in the serve process.")
    visibility_timeout: float = Field(30.0, gt=0, description="Seconds a received command stays hidden from "
                                                               "other workers before it is handed out again.")
    max_dequeue_count: int = Field(5, ge=1, description="Deliveries of a command before it goes to the poison queue.")
    load_samples: bool = Field(True, description="On first start, create the `demo` tenant and load samples/*.json.")
    max_wait_seconds: float = Field(30.0, ge=0, le=30, description="Upper bound of `Prefer: wait=N`.")
    auth_cache_seconds: float = Field(5.0, ge=0, description="How long a checked key is trusted without asking "
                                                              "the registry again (a rotated key may work this long).")
    shutdown_timeout: float = Field(5.0, gt=0, description="Seconds in-flight requests (a `Prefer: wait` among them) "
                                                           "may take to finish on shutdown before they are cut.")
    log_level: str = Field("info", description="uvicorn/engine log level: critical, error, warning, info, debug.")
