"""Settings, read once per process from ``TENANT_*`` variables (and ``.env``, written by the stack).

A wrong value stops start-up with a message naming the variable; secrets have no defaults.
"""

import contextlib
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from adapters.kafka.config import KafkaConfig
from adapters.postgres.pool import PoolConfig
from domain.namespaces import validate_namespace
from runtime.names import Names
from runtime.settings_scheduling import SchedulingSettings

ENV_PREFIX = "TENANT_"


class Settings(SchedulingSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # Deployment namespace: prefixes every name two deployments sharing Kafka, PostgreSQL and
    # Redis could collide on (see runtime/names.py). Empty: the historical names, unchanged.
    namespace: str = ""

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_partitions: int = Field(default=6, ge=1, le=1000)
    kafka_replication_factor: int = Field(default=1, ge=1, le=10)
    kafka_max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=3_000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=500)
    # How long the broker holds a fetch that finds nothing new. aiokafka sends one fetch per
    # broker at a time, and leaves out a partition whose fetched records are not consumed yet:
    # once a consumer's other partition is drained, a fetch for it alone waits this long, and the
    # partition still holding a backlog cannot fetch more until it returns (0.27-0.39 s gaps at a
    # backlog's end, traced, with aiokafka's 500). Lower means more empty fetches when idle.
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=1, le=500)
    kafka_request_timeout_ms: int = Field(default=30_000, ge=1_000)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    # How far an event's CloudEvents ``time`` may be from this worker's clock. Producers' clocks
    # drift by seconds, not days; an event older than Kafka would keep it, or from the future, is
    # a bug or a forgery and is dead-lettered (raise the age before replaying old dead letters).
    event_max_future_s: float = Field(default=300.0, ge=0)
    event_max_age_s: float = Field(default=30 * 86_400.0, gt=0)
    # CloudEvents content mode of result events on tenants.events (inputs are read in both):
    # structured (the envelope is the value) or binary (attributes in ce_* headers).
    result_content_mode: Literal["structured", "binary"] = "structured"
    # Tracing (OpenTelemetry): spans for consume, the transaction, dumps and publish go to
    # ``otlp`` (OTLP/HTTP at the endpoint), ``console`` (JSON lines on stdout) or ``none`` (a
    # no-op tracer; the W3C trace context still travels on every event).
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces", pattern=r"^https?://[^\s]+$"
    )
    otel_service_name: str = Field(default="tenant-service", min_length=1, max_length=128)
    # Consumers per group in one process (each owns whole partitions, order kept per partition).
    consumer_concurrency: int = Field(default=3, ge=1, le=64)
    # Handled offsets are committed in batches this often; 0 = one synchronous commit per record.
    kafka_commit_interval_ms: int = Field(default=100, ge=0, le=10_000)
    # Batched consumption (consumers/batch_delivery.py): up to this many records per fetch share
    # one transaction, a savepoint per event; 1 = the per-record path only. A fetch waits at most
    # the timeout for records; a batch transaction commits once it has run the max ms (the
    # rest of the fetch goes on in the next), so slow effects never make one huge transaction.
    consumer_batch_max_records: int = Field(default=1_000, ge=1, le=10_000)
    consumer_batch_timeout_ms: int = Field(default=50, ge=1, le=10_000)
    consumer_batch_max_ms: int = Field(default=200, ge=1, le=60_000)

    # PostgreSQL: the DSN carries the password, so it has no default.
    pg_dsn: SecretStr
    pg_pool_min: int = Field(default=1, ge=0)
    pg_pool_max: int = Field(default=10, ge=1, le=200)
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
    # A record still failing transiently after those retries is parked (its tenant's later records
    # queue behind it, other tenants go on) and retried by the re-driver; it is dead-lettered
    # (retries_exhausted) once it has had BOTH this many attempts and this long since its first
    # failure, so neither a burst of quick failures nor a long outage alone gives it up.
    redelivery_max_attempts: int = Field(default=50, ge=1, le=100_000)
    redelivery_max_age_s: float = Field(default=3600.0, ge=0)
    parked_max_delay_s: float = Field(default=60.0, gt=0)  # cap of the re-driver's backoff
    parked_poll_s: float = Field(default=1.0, gt=0, le=60)  # re-driver's look for due events

    # Outbox relay. A batch is one SELECT, one publish and one UPDATE: 1,000 rows a batch drained
    # a 10,000-event backlog about 1.5 × faster than 200 (bench/run broker, alternated runs).
    outbox_batch_size: int = Field(default=1_000, ge=1, le=10_000)
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_lock_id: int = 7_311_001
    # Leader lock sessions (relay, scheduler, retention): a leader cut off without a FIN loses
    # its session (and the lock) within this; a standby then takes over within its poll interval.
    leader_session_timeout_s: int = Field(default=10, ge=3, le=600)

    # Warm pool: this many tenant schemas and roles kept ready at the latest template version, so
    # a TenantRequested renames one instead of running the template's DDL; 0 = off (every tenant
    # is created). The provisioner workers' leader (its own lock) refills it, one per
    # transaction, looking again every refill interval once it is full. It makes up to
    # refill_connections schemas side by side: DDL is one backend's CPU, so two connections made
    # 1.35-1.5 x as many per second as one on 2 cores (three 1.5-1.7 x), alternated in one hour.
    warm_pool_size: int = Field(default=0, ge=0, le=10_000)
    warm_pool_refill_interval_s: float = Field(default=1.0, gt=0, le=3600)
    warm_pool_refill_connections: int = Field(default=2, ge=1, le=16)

    # Catalogue upkeep: the provisioner workers' leader (its own lock) looks at the database's
    # pg_catalog statistics every interval and vacuums each catalogue with at least the dead rows
    # AND that fraction of its live rows (domain/catalog_upkeep.py), since tenant DDL churn bloats
    # them faster than autovacuum reaches them. 0 = off. Needs the database owner's privileges.
    catalog_upkeep_lock_id: int = 7_311_050
    catalog_upkeep_interval_s: float = Field(default=30.0, ge=0, le=86_400)
    catalog_vacuum_dead_rows: int = Field(default=10_000, ge=1)
    catalog_vacuum_dead_fraction: float = Field(default=0.05, ge=0, le=100)

    # Retention of bookkeeping rows, pruned by one leader (its own lock) in bounded batches.
    # Ages in seconds; 0 keeps that table's rows forever. Unsent outbox rows and unfinished
    # jobs are never pruned. The inbox must outlive redelivery: a record whose ``time`` is older
    # than event_max_age_s is dead-lettered unread, so that (+ event_max_future_s) is the floor
    # and the default (None).
    retention_lock_id: int = 7_311_020
    retention_interval_s: float = Field(default=300.0, gt=0)
    retention_batch_size: int = Field(default=1_000, ge=1, le=100_000)
    inbox_retention_s: float | None = Field(default=None, ge=0)
    outbox_retention_s: float = Field(default=86_400.0, ge=0)
    jobs_retention_s: float = Field(default=30 * 86_400.0, ge=0)
    drills_retention_s: float = Field(default=90 * 86_400.0, ge=0)
    ticks_retention_s: float = Field(default=7 * 86_400.0, ge=0)

    # Backups: where, how, how long kept. The service holds public keys only; the master
    # identity (which unwraps per-tenant keys) is given to restore-capable workers alone.
    backup_target: Literal["local", "s3", "sftp"] = "local"
    backup_local_dir: Path = Path.home() / ".cache" / "tenant-service" / "backups"
    backup_master_recipient: str | None = Field(default=None, pattern=r"^age1[0-9a-z]{58}$")
    backup_master_identity_file: Path | None = None
    # Operators' keys an erase's final archive is encrypted to (it must outlive the tenant's
    # key); regular backups are encrypted to the tenant's key alone. Empty: archives refused.
    erase_archive_recipients: Annotated[tuple[str, ...], NoDecode] = ()
    backup_zstd_level: int = Field(default=3, ge=1, le=19)
    backup_zstd_threads: int = Field(default=0, ge=0, le=64)  # 0 = one per core
    backup_chunk_bytes: int = Field(default=1 << 20, ge=64 * 1024, le=64 << 20)
    backup_rate_limit_bytes: int = Field(default=0, ge=0)  # per second; 0 = unlimited
    backup_max_attempts: int = Field(default=5, ge=1, le=50)
    # Time for the manifest's exact row counts of one backup, all tables together; a table that
    # does not fit is given the planner's estimate (row_counts_estimated). 0: estimates only.
    backup_count_budget_ms: int = Field(default=10_000, ge=0, le=3_600_000)
    backup_retry_base_s: float = Field(default=2.0, gt=0)
    backup_retry_max_s: float = Field(default=300.0, gt=0)
    backup_lease_s: float = Field(default=30.0, ge=3)
    backup_poll_interval_s: float = Field(default=1.0, gt=0)
    backup_retention: Annotated[dict[str, tuple[int, int, int]], NoDecode] = {
        "free": (3, 7, 0),
        "pro": (7, 14, 8),
        "enterprise": (14, 30, 52),
    }
    erase_drop_batch: int = Field(default=100, ge=1, le=10_000)  # tables per transaction
    migration_lock_timeout_ms: int = Field(default=2_000, ge=50)
    migration_statement_timeout_ms: int = Field(default=60_000, ge=100)
    restore_grace_s: float = Field(default=7 * 24 * 3600, ge=0)
    # Restores spool the encrypted artifact here (0600) to verify its sha256 before a byte of it
    # is decrypted; it needs room for the largest artifact. Unset: the system temp directory.
    restore_spool_dir: Path | None = None

    s3_bucket: str = "tenant-backups"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_create_bucket: bool = False
    s3_part_bytes: int = Field(default=8 << 20, ge=5 << 20)

    sftp_host: str = "127.0.0.1"
    sftp_port: int = Field(default=22, ge=1, le=65535)
    sftp_user: str = "backup"
    sftp_key_file: Path | None = None
    sftp_known_hosts: Path | None = None
    sftp_dir: str = "/backups"

    # HTTP API (role ``api``): its own port and health routes. Bearer JWTs are checked against
    # the JWKS file (RS256/EdDSA); HS256 with a shared secret only when the development flag is
    # set. Rate limits are "requests/seconds" per client (token sub) and route, kept in Redis.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8090, ge=0, le=65535)
    api_jwks_file: Path | None = None
    # Or the issuer's JWKS URL: fetched asynchronously, kept api_jwks_ttl_s, fetched again for a
    # token whose kid it lacks but at most once per api_jwks_min_refresh_s (bogus kids cannot
    # flood the issuer). https only; http to a loopback host with the development flag.
    api_jwks_url: str | None = Field(default=None, max_length=2048)
    api_jwks_ttl_s: float = Field(default=300.0, ge=1.0)
    api_jwks_min_refresh_s: float = Field(default=30.0, ge=0.0)
    api_jwks_fetch_timeout_s: float = Field(default=5.0, gt=0)
    api_jwks_allow_http_loopback: bool = False
    api_jwt_audience: str = "tenant-service"
    api_jwt_issuer: str | None = None
    api_dev_hs256: bool = False
    api_hs256_secret: SecretStr | None = None
    api_rate_limit_read: str = Field(default="600/60", pattern=r"^[1-9][0-9]*/[1-9][0-9]*$")
    api_rate_limit_write: str = Field(default="60/60", pattern=r"^[1-9][0-9]*/[1-9][0-9]*$")
    api_max_body_bytes: int = Field(default=16_384, ge=256, le=1 << 20)
    # Idempotency keys are honoured at least this long (a client retrying the next day still
    # gets its first operation back).
    api_idempotency_ttl_s: float = Field(default=86_400.0, ge=86_400.0)
    api_page_size_max: int = Field(default=200, ge=1, le=1000)
    # An operation whose request is not known published this long after its last attempt (its
    # process died in between) is published again, same event ids; finished operations are
    # pruned by retention this long after they finish (never while their idempotency key lives).
    api_publish_timeout_s: float = Field(default=30.0, ge=1.0)
    api_operations_retention_s: float = Field(default=7 * 86_400.0, ge=0)

    # Process
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    shutdown_grace_s: float = Field(default=20.0, gt=0)
    startup_timeout_s: float = Field(default=60.0, gt=0)  # waiting for dependencies at start
    readiness_timeout_s: float = Field(default=2.0, gt=0)  # per /readyz probe
    lag_interval_s: float = Field(default=5.0, gt=0)  # consumer-lag gauge refresh
    # The CloudEvents ``source`` of what we publish; results are built without re-validation,
    # so it is held to the envelope's bounds here.
    source: str = Field(default="urn:tenant-service", min_length=1, max_length=512)

    @field_validator("plans", mode="before")
    @classmethod
    def _split_plans(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("erase_archive_recipients", mode="before")
    @classmethod
    def _split_recipients(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(r.strip() for r in value.split(",") if r.strip())
        return value

    @field_validator("erase_archive_recipients")
    @classmethod
    def _recipients_are_age(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for recipient in value:
            if not re.fullmatch(r"age1[0-9a-z]{58}", recipient):
                raise ValueError(f"not an age X25519 recipient: {recipient[:12]}...")
        return value

    @field_validator("backup_retention", mode="before")
    @classmethod
    def _parse_retention(cls, value: object) -> object:
        # "free=3/7/0,pro=7/14/8": keep-last / dailies / weeklies per plan
        if isinstance(value, str):
            parsed = {}
            for item in filter(None, (i.strip() for i in value.split(","))):
                plan, _, spec = item.partition("=")
                parsed[plan.strip()] = tuple(int(n) for n in spec.split("/"))
            return parsed
        return value

    @model_validator(mode="after")
    def _default_plan_is_a_plan(self) -> "Settings":
        if self.default_plan not in self.plans:
            raise ValueError(f"default_plan {self.default_plan!r} is not one of plans")
        return self

    @model_validator(mode="after")
    def _target_is_configured(self) -> "Settings":
        if self.backup_target == "sftp" and not (self.sftp_key_file and self.sftp_known_hosts):
            raise ValueError("backup_target sftp needs sftp_key_file and sftp_known_hosts")
        if self.backup_target == "s3" and not (self.s3_access_key_id and self.s3_secret_access_key):
            raise ValueError("backup_target s3 needs s3_access_key_id and s3_secret_access_key")
        return self

    @model_validator(mode="after")
    def _refill_leaves_connections(self) -> "Settings":
        # The refill's connections come from the worker's pool: the provisioners need one left.
        if self.warm_pool_size and self.warm_pool_refill_connections >= self.pg_pool_max:
            raise ValueError(
                f"warm_pool_refill_connections ({self.warm_pool_refill_connections}) must be"
                f" less than pg_pool_max ({self.pg_pool_max})"
            )
        return self

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return validate_namespace(value)

    @model_validator(mode="after")
    def _names_fit(self) -> "Settings":
        self.names  # noqa: B018  # derives every name once: one too long for PostgreSQL stops start-up
        return self

    @property
    def names(self) -> Names:
        """This deployment's physical names (topics, groups, schemas, locks, Redis keys)."""
        return Names.of(
            self.namespace,
            control_schema=self.control_schema,
            app_role=self.app_role,
            outbox_lock_id=self.outbox_lock_id,
            scheduler_lock_id=self.scheduler_lock_id,
            retention_lock_id=self.retention_lock_id,
            catalog_upkeep_lock_id=self.catalog_upkeep_lock_id,
        )

    # What the adapters take: plain values, so adapters/ never imports the settings.
    @property
    def kafka(self) -> KafkaConfig:
        """The Kafka connection and topic values of this deployment."""
        return KafkaConfig(
            bootstrap=self.kafka_bootstrap,
            request_timeout_ms=self.kafka_request_timeout_ms,
            record_bytes=self.kafka_record_bytes,
            topics=self.names.topics,
            partitions=self.kafka_partitions,
            replication_factor=self.kafka_replication_factor,
        )

    @property
    def pg_pool(self) -> PoolConfig:
        """The worker pool's DSN, sizes and statement/lock timeouts."""
        return PoolConfig(
            dsn=self.pg_dsn.get_secret_value(),
            min_size=self.pg_pool_min,
            max_size=self.pg_pool_max,
            statement_timeout_ms=self.pg_statement_timeout_ms,
            lock_timeout_ms=self.pg_lock_timeout_ms,
        )

    @model_validator(mode="after")
    def _hs256_is_development_only(self) -> "Settings":
        if self.api_hs256_secret is not None and not self.api_dev_hs256:
            raise ValueError("api_hs256_secret is accepted only with api_dev_hs256 (development)")
        return self

    @model_validator(mode="after")
    def _one_jwks_source(self) -> "Settings":
        if self.api_jwks_url is not None:
            if self.api_jwks_file is not None:
                raise ValueError("api_jwks_file and api_jwks_url exclude each other: choose one")
            _check_jwks_url(self.api_jwks_url, self.api_jwks_allow_http_loopback)
        return self

    @property
    def inbox_retention_floor_s(self) -> float:
        """The longest a record can still be acted on after its inbox row was written."""
        return self.event_max_age_s + self.event_max_future_s

    @property
    def inbox_keep_s(self) -> float:
        """The inbox retention in force (0: kept forever)."""
        if self.inbox_retention_s is None:
            return self.inbox_retention_floor_s
        return self.inbox_retention_s

    @property
    def kafka_record_bytes(self) -> int:
        """What Kafka must take for one of our records: a value of ``max_message_bytes`` plus
        64 KiB of headroom for its key, its headers (a dead letter adds x-dlq-* ones to the
        original's) and the record batch's framing. The topics, the producer and the consumers'
        fetches all use this one figure, so a record a source topic accepted fits the DLQ too
        and is always fetched whole."""
        return self.max_message_bytes + 64 * 1024

    @model_validator(mode="after")
    def _inbox_outlives_redelivery(self) -> "Settings":
        keep = self.inbox_retention_s
        if keep and keep < self.inbox_retention_floor_s:
            raise ValueError(
                f"inbox_retention_s {keep:g} is below event_max_age_s + event_max_future_s"
                f" ({self.inbox_retention_floor_s:g}): a redelivered record could be acted on twice"
            )
        return self

    @field_validator("pg_dsn")
    @classmethod
    def _postgres_dsn(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value


def _named_in(message: str) -> str:
    names = [
        ENV_PREFIX + f.upper() for f in Settings.model_fields if re.search(rf"\b{f}\b", message)
    ]
    return ", ".join(names) or "settings"


class SettingsError(SystemExit):
    """Raised at start-up; its message names every offending variable."""


def load_settings() -> Settings:
    """Read the settings or stop the process with the names of the wrong variables."""
    try:
        return Settings()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = "_".join(str(p) for p in err["loc"]).upper()
            # model-level checks have no location: name the variables their message mentions
            name = ENV_PREFIX + field if field else _named_in(err["msg"])
            lines.append(f"  {name}: {err['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None


def _check_jwks_url(url: str, allow_http_loopback: bool) -> None:
    # Keys over plain http could be swapped on the way: https, or http to this machine when
    # developing (a local issuer, a test server).
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("api_jwks_url needs a host")
    if parts.scheme == "https":
        return
    loopback = parts.hostname == "localhost"
    with contextlib.suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(parts.hostname).is_loopback
    if parts.scheme == "http" and allow_http_loopback and loopback:
        return
    raise ValueError(
        "api_jwks_url must be https (http only to a loopback host with api_jwks_allow_http_loopback)"
    )
