"""Process-wide settings from the environment (and `.env`), validated once at start.

`DATABASE_URL` and `REDIS_URL` may be unset: `reelflow dev` and the test suite then start
the embedded PostgreSQL and Redis and set them for their child processes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from reelflow.database_settings import DatabaseSettings
from reelflow.errors import ConfigError, field_errors, summarise
from reelflow.media_settings import MediaSettings
from reelflow.setting_values import (
    AMQP_SCHEMES,
    REDIS_SCHEMES,
    async_database_url,
    parse_pools,
    parse_step_pools,
    parse_tokens,
)

__all__ = ["Settings", "async_database_url", "get_settings", "load_settings"]


class Settings(MediaSettings, DatabaseSettings):
    """Every setting: the service's here, the database connection's in `DatabaseSettings`,
    the video's in `MediaSettings`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str | None = Field(None, description="PostgreSQL URL; unset: embedded server")
    redis_url: str | None = Field(None, description="Redis URL; unset: embedded server")
    celery_broker_url: str | None = Field(
        None, description="Broker URL: redis:// or amqp:// (RabbitMQ); default REDIS_URL"
    )
    amqp_queue_type: Literal["quorum", "classic"] = Field(
        "quorum", description="RabbitMQ only: the type of the step queues (quorum: replicated)"
    )
    celery_result_backend: str | None = Field(
        None, description="Result backend URL (default: REDIS_URL); must be Redis for chords"
    )
    reelflow_home: Path = Field(
        Path(".reelflow"), description="Folder of `reelflow dev`'s embedded servers and data"
    )
    artifact_root: Path = Field(
        Path(".reelflow/artifacts"), description="Where steps write files (REELFLOW_HOME/artifacts)"
    )
    publish_dir: Path = Field(
        Path(".reelflow/published"),
        description="Where videos are published (REELFLOW_HOME/published)",
    )
    artifact_url: str | None = Field(
        None, description="s3://bucket/prefix: artifacts in object storage instead of ARTIFACT_ROOT"
    )
    publish_url: str | None = Field(
        None, description="s3://bucket/prefix of published videos (default ARTIFACT_URL/published)"
    )
    scratch_dir: Path = Field(
        Path(".reelflow/scratch"),
        description="Local files in flight: steps' downloads, uploads being received"
        " (REELFLOW_HOME/scratch)",
    )
    aws_endpoint_url: str | None = Field(
        None, description="S3 endpoint (MinIO, R2, ...); unset: AWS for AWS_REGION"
    )
    aws_region: str = Field("us-east-1", description="S3 region")
    aws_access_key_id: str | None = Field(None, description="S3 access key id")
    aws_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key")
    step_lease_seconds: int = Field(
        60, ge=5, le=86_400, description="How long a claimed step is owned without a heartbeat"
    )
    stall_after_seconds: int = Field(
        120, ge=5, description="Reconciler: a run with no progress and no live lease this long"
    )
    reconcile_interval_seconds: float = Field(
        5, gt=0, le=3600, description="Reconciler: seconds between passes (in every worker)"
    )
    worker_heartbeat_seconds: float = Field(
        2, gt=0, le=60, description="How often a worker records that it is alive"
    )
    worker_dead_after_seconds: float = Field(
        10, gt=0, le=3600, description="A worker silent this long is dead: its steps are requeued"
    )
    relay_grace_seconds: float = Field(
        2, ge=0, le=60, description="Background relays leave a new intent to its writer this long"
    )
    sse_keepalive_seconds: float = Field(
        15, gt=0, le=300, description="Event streams send a keepalive comment this often"
    )
    max_active_runs: int = Field(
        1000, ge=1, description="Runs pending or running at once; beyond it POST /runs gets 429"
    )
    rate_limit: str = Field(
        "120/minute", description="Mutating requests per client (`limits` notation); empty: off"
    )
    max_params_bytes: int = Field(
        65_536, ge=64, description="Largest params of a run (JSON bytes); beyond it 413"
    )
    allow_fault_injection: bool = Field(
        False, description="Honour `faults` on runs (testing aid; never in production)"
    )
    visibility_timeout_seconds: int = Field(
        7200, ge=60, description="Redis broker: redelivery timeout; must exceed the longest step"
    )
    tracing: bool = Field(
        False, description="OpenTelemetry traces (the otel extra; exporter from OTEL_* variables)"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console in a terminal, JSON otherwise"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG, INFO, WARNING or ERROR"
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token of the API: every change, and each read unless PUBLIC_READS"
    )
    api_tokens: SecretStr | None = Field(
        None,
        description="More bearer tokens, each with a name (name=token,...): the name is the"
        " actor and the default tenant of what it starts",
    )
    public_reads: bool = Field(False, description="With a token set: reads (GET, HEAD) need none")
    metrics_token: SecretStr | None = Field(None, description="Bearer token of /metrics alone")
    pools: str = Field(
        "",
        description="Slot pools (name:size,...), e.g. gpu:4: steps on a queue of that name (or"
        " naming the pool) hold a slot while they run",
    )
    step_pools: str = Field(
        "", description="Steps moved to another pool (step=pool,...), e.g. render_scene=farm"
    )
    trusted_proxies: str = Field(
        "",
        description="Proxy addresses whose X-Forwarded-For names the client (comma-separated)",
    )
    cors_origins: str = Field(
        "", description="Other origins allowed to call the API from a browser (comma-separated)"
    )
    allowed_hosts: str = Field(
        "",
        description="Host names the API answers to (comma-separated; * any); "
        "default: loopback names when API_HOST is loopback, else any",
    )
    api_host: str = Field("127.0.0.1", description="Address the API binds")
    api_port: int = Field(8000, ge=1, le=65535, description="Port the API binds")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest accepted request body")
    dispatch_timeout_seconds: float = Field(
        3.0, gt=0, le=60, description="How long the API waits for the broker"
    )

    workflow_modules: str = Field(
        "",
        description="Modules that register more workflows (comma-separated, importable by "
        "the API and the workers)",
    )

    @field_validator("database_url")
    @classmethod
    def _pg(cls, v: str | None) -> str | None:
        return async_database_url(v) if v else None

    @field_validator("redis_url", "celery_result_backend")
    @classmethod
    def _redis(cls, v: str | None) -> str | None:
        if v and not v.startswith(REDIS_SCHEMES):
            raise ValueError("must be a redis:// URL (chords need Redis as the result backend)")
        return v or None

    @field_validator("artifact_url", "publish_url")
    @classmethod
    def _s3(cls, v: str | None) -> str | None:
        if v and (not v.startswith("s3://") or not urlsplit(v).netloc):
            raise ValueError("must be an s3://bucket[/prefix] URL")
        return v.rstrip("/") if v else None

    @field_validator("celery_broker_url")
    @classmethod
    def _broker(cls, v: str | None) -> str | None:
        if v and not v.startswith(REDIS_SCHEMES + AMQP_SCHEMES):
            raise ValueError("must be a redis:// or amqp:// URL")
        return v or None

    @field_validator("pools")
    @classmethod
    def _pools(cls, v: str) -> str:
        parse_pools(v)  # "gpu:4,render-farm:2": ValueError otherwise
        return v.strip()

    @field_validator("step_pools")
    @classmethod
    def _step_pools(cls, v: str) -> str:
        parse_step_pools(v)
        return v.strip()

    @field_validator("api_tokens")
    @classmethod
    def _tokens(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            parse_tokens(v.get_secret_value())
        return v

    def pool_sizes(self) -> dict[str, int]:
        """The declared pools: name -> number of slots."""
        return parse_pools(self.pools)

    def pools_of_steps(self) -> dict[str, str]:
        """Steps whose pool the settings choose: step -> pool."""
        return parse_step_pools(self.step_pools)

    def tokens(self) -> dict[str, str]:
        """Every accepted bearer token -> its name (API_TOKEN's name is `api`)."""
        found = parse_tokens(self.api_tokens.get_secret_value()) if self.api_tokens else {}
        if self.api_token is not None:
            found[self.api_token.get_secret_value()] = "api"
        return found

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, v: str) -> str:
        if v.strip():
            from limits import parse

            parse(v)  # "120/minute", "10/second;1000/hour": ValueError otherwise
        return v.strip()

    @model_validator(mode="before")
    @classmethod
    def _under_home(cls, data: Any) -> Any:
        """Artifact and publish folders default to folders of REELFLOW_HOME."""
        if isinstance(data, dict) and data.get("reelflow_home"):
            home = Path(data["reelflow_home"])
            data.setdefault("artifact_root", home / "artifacts")
            data.setdefault("publish_dir", home / "published")
            data.setdefault("scratch_dir", home / "scratch")
        return data

    @model_validator(mode="after")
    def _paths(self) -> Settings:
        for name in ("artifact_root", "publish_dir", "scratch_dir", "reelflow_home"):
            setattr(self, name, getattr(self, name).resolve())
        return self

    def secrets(self) -> list[str]:
        """Every secret value these settings hold (tokens, keys, passwords inside URLs):
        what the log redactor masks wherever it appears."""
        from reelflow.redaction import url_password

        found: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif isinstance(value, str) and "://" in value:
                found.append(url_password(value) or "")
        found.extend(self.tokens())  # each token alone, not only API_TOKENS' whole list
        return [s for s in found if s]

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (use `reelflow dev` for embedded servers)")
        return self.database_url

    @property
    def broker_url(self) -> str:
        url = self.celery_broker_url or self.redis_url
        if not url:
            raise ConfigError("REDIS_URL is not set (use `reelflow dev` for embedded servers)")
        return url

    @property
    def broker_kind(self) -> Literal["redis", "amqp"]:
        return "amqp" if self.broker_url.startswith(AMQP_SCHEMES) else "redis"

    @property
    def result_backend(self) -> str:
        url = self.celery_result_backend or self.redis_url
        if not url:
            raise ConfigError("REDIS_URL is not set (use `reelflow dev` for embedded servers)")
        return url


def load_settings() -> Settings:
    """Settings, or a ConfigError whose one-line message names every bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        errors = [{**e, "field": e["field"].upper()} for e in field_errors(exc.errors())]
        raise ConfigError(f"invalid settings: {summarise(errors, whole='settings')}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
