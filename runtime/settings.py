"""Settings, read once per process from ``TENANT_*`` variables (and ``.env``, written by the stack).

A wrong value stops start-up with a message naming the variable; secrets have no defaults.
"""

from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "TENANT_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_partitions: int = Field(default=6, ge=1, le=1000)
    kafka_replication_factor: int = Field(default=1, ge=1, le=10)
    kafka_max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=3_000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=500)
    kafka_request_timeout_ms: int = Field(default=30_000, ge=1_000)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)

    # PostgreSQL: the DSN carries the password, so it has no default.
    pg_dsn: SecretStr
    pg_pool_min: int = Field(default=1, ge=0)
    pg_pool_max: int = Field(default=5, ge=1, le=200)
    pg_statement_timeout_ms: int = Field(default=30_000, ge=100)
    pg_lock_timeout_ms: int = Field(default=5_000, ge=100)
    control_schema: str = Field(default="tenant_service", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    app_role: str = Field(default="tenant_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    # Redis
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")

    # Tenants
    plans: Annotated[frozenset[str], NoDecode] = frozenset({"free", "pro", "enterprise"})
    default_plan: str = "free"
    max_tenants: int = Field(default=10_000, ge=1)

    # Retries of transient failures inside one delivery, then the message is handed back to Kafka.
    retry_attempts: int = Field(default=5, ge=1, le=100)
    retry_base_delay_s: float = Field(default=0.2, gt=0)
    retry_max_delay_s: float = Field(default=10.0, gt=0)
    # Unexpected handler errors (bugs): redeliveries of one message before it is dead-lettered.
    poison_redeliveries: int = Field(default=3, ge=1)

    # Outbox relay
    outbox_batch_size: int = Field(default=200, ge=1, le=10_000)
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_lock_id: int = 7_311_001

    # Process
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    shutdown_grace_s: float = Field(default=20.0, gt=0)
    source: str = "urn:tenant-service"

    @field_validator("plans", mode="before")
    @classmethod
    def _split_plans(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(p.strip() for p in value.split(",") if p.strip())
        return value

    @model_validator(mode="after")
    def _default_plan_is_a_plan(self) -> "Settings":
        if self.default_plan not in self.plans:
            raise ValueError(f"default_plan {self.default_plan!r} is not one of plans")
        return self

    @field_validator("pg_dsn")
    @classmethod
    def _postgres_dsn(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value


class SettingsError(SystemExit):
    """Raised at start-up; its message names every offending variable."""


def load_settings() -> Settings:
    """Read the settings or stop the process with the names of the wrong variables."""
    try:
        return Settings()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as e:
        lines = []
        for err in e.errors():
            name = ENV_PREFIX + ("_".join(str(p) for p in err["loc"]).upper() or "DEFAULT_PLAN")
            lines.append(f"  {name}: {err['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None
