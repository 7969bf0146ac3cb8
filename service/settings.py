"""Service settings, read from environment variables (pydantic-settings).

Variable names carry no prefix (``MODEL_PATH``, ``PORT``, ...) because that is
what the Makefile, the README and the Docker image use. Unsafe or nonsensical
values are refused at startup with a message that names the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    """Everything the service can be configured with; one field per environment variable."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        env_ignore_empty=True,
        frozen=True,
        protected_namespaces=(),
    )

    model_path: Path = Field(description="MODEL_PATH: the bnfold ONNX file to serve.")
    ort_intra_op_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="ORT_INTRA_OP_THREADS: ORT threads per worker. ORT's default pool spins "
        "threads on other cores and escapes CPU pinning, so 1 unless measured otherwise.",
    )
    ort_inter_op_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="ORT_INTER_OP_THREADS: ORT's inter-op pool; the session runs its nodes "
        "sequentially, so 1 unless measured otherwise.",
    )
    max_batch_size: int = Field(
        default=64, ge=1, le=4096, description="MAX_BATCH_SIZE: samples per batch request."
    )
    max_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        le=64 << 20,
        description="MAX_BODY_BYTES: larger bodies get 413 before they are read.",
    )
    log_level: LogLevel = Field(
        default="info", description="LOG_LEVEL: critical, error, warning, info or debug."
    )
    access_log: bool = Field(default=False, description="ACCESS_LOG: uvicorn's access log.")
    api_token: str | None = Field(
        default=None,
        repr=False,
        description="API_TOKEN: if set, every route except the health probes, the pages and "
        "their files (and the schema, see DOCS_ACCESS) needs 'Authorization: Bearer <token>'.",
    )
    docs_access: Literal["token", "public"] = Field(
        default="token",
        description="DOCS_ACCESS: with API_TOKEN set, whether the OpenAPI schema "
        "(/openapi.json) needs the token like the API (token) or is public. The pages (/, "
        "/docs) and their files hold no model data and are always public; they ask for the "
        "token when the service wants one.",
    )
    cors_origins: str = Field(
        default="",
        description="CORS_ORIGINS: comma-separated allowed origins; empty (default) = CORS off.",
    )
    max_model_bytes: int = Field(
        default=256 << 20,
        ge=1024,
        le=2 << 30,
        description="MAX_MODEL_BYTES: a larger MODEL_PATH is refused at startup (ONNX files "
        "cannot exceed 2 GiB).",
    )
    model_digest: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{12,64}$",
        description="MODEL_DIGEST: if set, the model's digest must start with it (the 12-digit "
        "version or the whole 64): a file re-sealed after tampering is refused.",
    )
    max_header_bytes: int = Field(
        default=16 << 10,
        ge=1024,
        le=1 << 20,
        description="MAX_HEADER_BYTES: request line plus headers, as sent; more is 431.",
    )
    max_headers: int = Field(
        default=100, ge=8, le=10_000, description="MAX_HEADERS: more header fields is 431."
    )
    max_concurrency: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="MAX_CONCURRENCY: requests in progress per worker; more get 503 "
        "(the health probes never do).",
    )
    max_connections: int = Field(
        default=512,
        ge=2,
        le=1_000_000,
        description="MAX_CONNECTIONS: open connections per worker; beyond it the longest idle "
        "one is closed to make room.",
    )
    timeout_keep_alive: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="TIMEOUT_KEEP_ALIVE: seconds a connection may wait for its next request "
        "(a new one for its first).",
    )
    timeout_headers: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="TIMEOUT_HEADERS: seconds from a request's first byte to the end of its "
        "headers; then 408.",
    )
    timeout_body: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="TIMEOUT_BODY: seconds from the end of the headers to the end of the body; "
        "then 408.",
    )
    timeout_shutdown: float = Field(
        default=20.0,
        gt=0,
        le=3600,
        description="TIMEOUT_SHUTDOWN: after SIGTERM, seconds in-flight requests get to finish "
        "before they are cancelled (keep it under Kubernetes' terminationGracePeriodSeconds "
        "minus the preStop sleep).",
    )
    timeout_shutdown_idle: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="TIMEOUT_SHUTDOWN_IDLE: after SIGTERM, seconds an idle keep-alive connection "
        "stays open for a request already on its way (answered with 'Connection: close').",
    )
    error_backoff: float = Field(
        default=50.0,
        ge=0,
        le=10_000,
        description="ERROR_BACKOFF: after a 4xx answer that took t seconds, the connection is "
        "not read for ERROR_BACKOFF x t (0: off), so that costly bad requests cannot crowd out "
        "good ones.",
    )
    error_backoff_max: float = Field(
        default=1.0, ge=0, le=60, description="ERROR_BACKOFF_MAX: the longest such pause, seconds."
    )
    model_poll_seconds: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="MODEL_POLL_SECONDS: how often to look whether MODEL_PATH changed and "
        "reload it if so, as SIGHUP does (0: never; only SIGHUP reloads).",
    )
    host: str = Field(
        default="127.0.0.1",
        description="HOST: the address to listen on (0.0.0.0: every interface, as in the "
        "Docker image).",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="PORT: the TCP port.")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="WORKERS: uvicorn worker processes on one socket; each loads the model "
        "and keeps its own metrics and drift window.",
    )
    # Drift monitoring (service.monitor): needs a card with a monitor reference.
    monitor: bool = Field(
        default=True,
        description="MONITOR: watch the inputs for drift with the model's own BatchNorm "
        "statistics (GET /monitor, drift metrics, out-of-range warnings); off: none of it.",
    )
    monitor_window: int = Field(
        default=256,
        ge=16,
        le=16384,
        description="MONITOR_WINDOW: how many recent samples the drift score covers.",
    )
    monitor_share: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="MONITOR_SHARE: the most of the serving time spent running the whole graph "
        "(answers and the drift window's statistics, about 1.5x the lean graph's time on the "
        "digits CNN): at low traffic every request feeds the window, under load one now and "
        "then. Every request is still range-checked and counted; 1 feeds every request.",
    )
    out_of_range: Literal["warn", "reject"] = Field(
        default="warn",
        description="OUT_OF_RANGE: a sample outside the training range is answered with "
        "'warnings' (warn) or refused with 422 (reject).",
    )

    @field_validator("log_level", "docs_access", "out_of_range", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("api_token")
    @classmethod
    def _strong_token(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("API_TOKEN must be at least 16 characters (or unset)")
        return value

    @field_validator("ort_intra_op_threads")
    @classmethod
    def _threads_fit(cls, value: int) -> int:
        cores = os.cpu_count() or 1
        if value > cores:
            raise ValueError(f"ORT_INTRA_OP_THREADS={value} exceeds the {cores} CPU cores")
        return value

    @field_validator("model_digest", mode="before")
    @classmethod
    def _lower_digest(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("model_poll_seconds")
    @classmethod
    def _poll_not_busy(cls, value: float) -> float:
        if 0 < value < 0.1:
            raise ValueError("MODEL_POLL_SECONDS must be 0 (off) or at least 0.1")
        return value

    @model_validator(mode="after")
    def _cors_needs_explicit_origins(self) -> Settings:
        if "*" in self.cors_origin_list and self.api_token is not None:
            raise ValueError("CORS_ORIGINS='*' together with API_TOKEN would expose the token")
        return self

    @model_validator(mode="after")
    def _room_for_probes(self) -> Settings:
        # Eviction needs an idle connection to close: in-flight requests alone never fill it.
        if self.max_connections <= self.max_concurrency:
            raise ValueError(
                f"MAX_CONNECTIONS ({self.max_connections}) must exceed MAX_CONCURRENCY "
                f"({self.max_concurrency}), so that a health probe always finds room"
            )
        return self

    def model_options(self) -> dict[str, Any]:
        """The keyword arguments of ``ModelRuntime.load`` these settings choose."""
        return {
            "path": self.model_path,
            "intra_op_threads": self.ort_intra_op_threads,
            "inter_op_threads": self.ort_inter_op_threads,
            "max_bytes": self.max_model_bytes,
            "expected_digest": self.model_digest,
            "monitor": self.monitor,
        }

    @property
    def cors_origin_list(self) -> list[str]:
        """CORS_ORIGINS split on commas, blanks dropped."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


def describe_error(exc: Exception) -> str:
    """One line naming the variable(s) at fault in a settings ``ValidationError``."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).splitlines()[0]
    parts = []
    for err in errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        if err.get("type") == "missing":
            parts.append(f"{field.upper()} is not set")
        else:
            parts.append(f"{field.upper()}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
