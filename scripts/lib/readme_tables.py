# ruff: noqa: E501  (the prose tables below read better one entry per line)
"""The README tables that are derived from code: events, settings, tenantctl commands, exit codes.

Used by scripts/export_contracts.py, which rewrites the text between
``<!-- BEGIN GENERATED: <name> ... -->`` and ``<!-- END GENERATED: <name> -->``. Names, types,
defaults and bounds come from the code; the prose (who produces an event, what a setting means)
lives in the two dictionaries below. A setting's ``Field(description=...)`` wins over them.
"""

import re
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from contracts.events import ALL_TENANTS, EVENT_TYPES, INPUTS, Event
from runtime.settings import ENV_PREFIX, Settings
from runtime.settings_scheduling import SchedulingSettings

README_FILE = Path(__file__).resolve().parents[2] / "README.md"
_PROV = "`tenant-provisioner` via outbox relay"
_BACKUP = "`tenant-backup` via outbox relay"
_METRICS = "`tenant-metrics` via outbox relay"

# type -> (producer, meaning). Which of these are built yet is the README's Status section's job.
EVENTS: dict[str, tuple[str, str]] = {
    "TenantRequested": (
        "upstream (sign-up, billing); `tenantctl request`",
        "Create the tenant: schema, role, template tables, RLS, registry row.",
    ),
    "TenantDeactivated": ("upstream (billing)", "Suspend the tenant; its data is kept."),
    "TenantReactivated": ("upstream (billing)", "Resume a suspended tenant."),
    "TenantEraseRequested": (
        "upstream (off-boarding)",
        "Erase the tenant, optionally after a final archive backup.",
    ),
    "TenantMigrationDue": (
        "`tenantctl migrate`",
        "Migrate the tenant's schema to `target_version`.",
    ),
    "BackupDue": ("scheduler; operator", "Back up one tenant."),
    "RestoreRequested": ("operator", "Restore a tenant from a backup (`latest` by default)."),
    "MetricsDue": ("scheduler", "Collect metrics for every tenant in one tick."),
    "TenantProvisioned": (
        _PROV,
        "The tenant exists with this plan (also the answer to a repeated request).",
    ),
    "TenantProvisioningFailed": (_PROV, "The request was refused or failed; no DDL was kept."),
    "TenantSuspended": (_PROV, "The tenant is suspended."),
    "TenantResumed": (_PROV, "The tenant is active again."),
    "TenantSuspendFailed": (_PROV, "A suspend changed nothing: unknown, erasing or erased tenant."),
    "TenantResumeFailed": (_PROV, "A resume changed nothing: unknown, erasing or erased tenant."),
    "TenantErased": (
        _PROV,
        "The tenant is erased; `erased` lists what this run removed; every erase request answers"
        " the first erase's `archive_backup_id`.",
    ),
    "TenantEraseFailed": (_PROV, "An erase could not proceed as asked (e.g. `unknown_tenant`)."),
    "TenantMigrated": (_PROV, "The tenant's schema is at `to_version`."),
    "TenantMigrationFailed": (_PROV, "Migrating this tenant failed; other tenants are unaffected."),
    "BackupCompleted": (_BACKUP, "A backup is stored and catalogued."),
    "BackupFailed": (_BACKUP, "A backup gave up after `attempts` tries."),
    "RestoreCompleted": (_BACKUP, "A restore was swapped in."),
    "RestoreFailed": (_BACKUP, "A restore failed."),
    "TenantMetricsCollected": (_METRICS, "One tenant's metrics snapshot."),
    "TenantQuotaExceeded": (_METRICS, "A tenant passed a plan limit."),
}

SETTINGS: dict[str, str] = {
    "kafka_bootstrap": "Kafka bootstrap servers (`host:port[,host:port]`).",
    "kafka_partitions": "Partitions of the topics the workers create at start-up (existing topics are left as they are).",
    "kafka_replication_factor": "Replication factor of those topics.",
    "kafka_max_poll_interval_ms": "Consumer `max.poll.interval.ms`: a handler slower than this makes the member leave its group.",
    "kafka_session_timeout_ms": "Consumer group session timeout.",
    "kafka_heartbeat_interval_ms": "Consumer heartbeat interval.",
    "kafka_fetch_max_wait_ms": "Consumer `fetch.max.wait.ms`: how long the broker holds a fetch that finds nothing new. aiokafka has one fetch per broker in flight, so a consumer's partition with a backlog waits behind a drained partition's fetch for up to this long.",
    "kafka_request_timeout_ms": "Request timeout of producers, consumers and the admin client.",
    "max_message_bytes": "Largest record accepted; a bigger one is dead-lettered (`too_large`). Also sizes producer requests and fetches.",
    "pg_dsn": "PostgreSQL URL of the service's login role (`postgresql://user:password@host:port/db`). A secret: no default; `scripts/stack up` writes it to `.env`.",
    "pg_pool_min": "Minimum connections in each worker's pool.",
    "pg_pool_max": "Maximum connections in each worker's pool.",
    "pg_statement_timeout_ms": "`statement_timeout` of every pooled session.",
    "pg_lock_timeout_ms": "`lock_timeout` of every pooled session.",
    "namespace": "Deployment namespace (lowercase letters and digits, at most 15, no underscore; empty = none). Prefixes everything two deployments sharing Kafka, PostgreSQL and Redis could collide on: topics `<ns>.tenants.*`, consumer groups `<ns>-tenant-*`, the control schema `<ns>_<control_schema>`, the application role `<ns>_<app_role>`, the API's read role `<ns>_tenant_api_reader`, the restore role `<ns>_<control_schema>_restore`, tenant schemas and roles `<ns>_tenant_<id>`, the tenants' session tag `<ns>:tenant:<id>`, the leaders' advisory-lock ids, Redis keys `<ns>:tenant:<id>:*` and `<ns>:tenant-api:rl:*`.",
    "control_schema": "Schema of the service's own tables: registry, inbox, outbox.",
    "app_role": "Shared application login role; it is granted every tenant role (NOINHERIT: it must `SET ROLE`).",
    "redis_url": "Redis URL (checked by `/readyz`).",
    "plans": "Allowed plans, comma-separated.",
    "default_plan": "Plan of `tenantctl request` without `--plan`; must be one of the plans.",
    "max_tenants": "Tenants (not erased) allowed; beyond it `TenantProvisioningFailed{quota_exceeded}`. Soft by up to the number of concurrent provisioners.",
    "event_max_future_s": "Seconds an event's CloudEvents `time` may be ahead of the consumer's clock; further ahead, the record is dead-lettered (`time_out_of_range`) unread.",
    "event_max_age_s": "Seconds an event's `time` may be behind the consumer's clock; older, the record is dead-lettered (`time_out_of_range`) unread (raise it before replaying old dead letters). With `TENANT_EVENT_MAX_FUTURE_S`, the floor of `TENANT_INBOX_RETENTION_S`.",
    "consumer_concurrency": "Consumers of each consumer group in one process; each owns whole partitions, so partitions are handled in parallel and each one in order.",
    "consumer_batch_max_records": "Records of one fetch handled together: the events of batchable types share one transaction, a savepoint each (one failing event is undone alone and its tenant's later records take the per-record path after it). 1 = every record on its own.",
    "consumer_batch_timeout_ms": "How long a batched consumer waits for records when none are buffered (ms); it never waits to fill a batch.",
    "consumer_batch_max_ms": "A batch transaction commits once it has run this long (ms); the rest of the fetch goes on in the next one, so slow effects (real DDL) never make one long transaction holding many tenants' locks.",
    "kafka_commit_interval_ms": "Handled offsets are committed in batches this often (ms); 0 = one synchronous commit per record. Records handled but not yet committed are redelivered after a crash, and the inbox drops them.",
    "result_content_mode": "CloudEvents content mode of result events: `structured` (the envelope is the value) or `binary` (attributes in `ce_*` headers). Inputs are read in both.",
    "otel_exporter": "Where OpenTelemetry spans (consume, database transaction, dump, publish) go: `otlp` (OTLP/HTTP to `TENANT_OTEL_ENDPOINT`), `console` (one JSON span per line on stdout) or `none` (a no-op tracer). The W3C trace context travels on events whatever the exporter.",
    "otel_endpoint": "OTLP/HTTP traces endpoint of the collector, with `TENANT_OTEL_EXPORTER=otlp`.",
    "otel_service_name": "`service.name` of this process's spans.",
    "retry_attempts": "Attempts at a transient failure within one delivery before the record is parked (its tenant's later records queue behind it; other tenants go on), or handed back to Kafka when it cannot be parked.",
    "retry_base_delay_s": "First backoff delay between those attempts (exponential, full jitter).",
    "retry_max_delay_s": "Cap of that backoff.",
    "poison_redeliveries": "Unexpected handler errors on one record before it is dead-lettered (`handler_error`).",
    "redelivery_max_attempts": "Transient attempts of one record (in deliveries and while parked) before it may be given up; it is dead-lettered (`retries_exhausted`) once it has had this many AND `TENANT_REDELIVERY_MAX_AGE_S` has passed since its first failure.",
    "redelivery_max_age_s": "Seconds since a record's first transient failure before it may be given up (see `TENANT_REDELIVERY_MAX_ATTEMPTS`).",
    "parked_max_delay_s": "Cap of the backoff between the re-driver's tries of a parked record (exponential from `TENANT_RETRY_BASE_DELAY_S`).",
    "parked_poll_s": "How often the re-driver looks for parked records that are due.",
    "outbox_batch_size": "Outbox rows the relay publishes per batch.",
    "outbox_poll_interval_s": "Relay poll interval (commits also wake it via NOTIFY); a standby retries the leader lock this often.",
    "outbox_lock_id": "Advisory-lock key that elects the single relay leader.",
    "leader_session_timeout_s": "Leader lock sessions (relay, scheduler, retention) end once idle this long (`idle_session_timeout`, TCP keepalives); leaders check theirs every fifth of it. A leader cut off silently is replaced within this + the standby's poll interval.",
    "warm_pool_size": "Tenant schemas and roles kept ready at the latest template version under neutral names (`<prefix>_pool_<hex>`); a `TenantRequested` renames one to the tenant's inside its transaction instead of running the template's DDL, and creates as before when none is left. 0 = off. Refilled by one leader among the `provisioner` workers.",
    "warm_pool_refill_interval_s": "How often the warm pool's leader looks at a full pool again (it refills at once, one schema per transaction, when it finds one missing).",
    "warm_pool_refill_connections": "Pooled schemas the warm pool's leader makes side by side when the pool is short (each on its own connection from the worker's pool, in its own transaction; never more than are missing; one at a time while provisioners are claiming). Must be below `TENANT_PG_POOL_MAX` when the pool is on.",
    "catalog_upkeep_lock_id": "Advisory-lock key that elects the single catalogue upkeep leader (runs in `provisioner` workers).",
    "catalog_upkeep_interval_s": "How often the catalogue upkeep's leader (one among the `provisioner` workers, its own advisory lock) reads the database's `pg_catalog` statistics and vacuums the catalogues tenant DDL bloats (`pg_attribute`, `pg_depend`, `pg_class`...) that are due. 0 = off. Needs the database owner's privileges; without them the job logs `catalog_upkeep_not_permitted` once and stands down.",
    "catalog_vacuum_dead_rows": "Dead rows from which a (non-shared) `pg_catalog` table is vacuumed by the catalogue upkeep, if it also has `TENANT_CATALOG_VACUUM_DEAD_FRACTION` of its live rows dead.",
    "catalog_vacuum_dead_fraction": "Dead rows, as a fraction of the catalogue's live rows, also needed before the upkeep vacuums it (keeps a large catalogue from being vacuumed over and over for little gain); 0 = the count alone. A catalogue never vacuumed nor analysed reports 0 live rows: the count alone decides.",
    "retention_lock_id": "Advisory-lock key that elects the single pruner of bookkeeping rows (runs in `relay` workers).",
    "retention_interval_s": "How often the retention leader prunes.",
    "retention_batch_size": "Rows deleted per transaction when pruning.",
    "inbox_retention_s": "Age after which inbox rows are pruned; unset = `EVENT_MAX_AGE_S` + `EVENT_MAX_FUTURE_S` (older records are dead-lettered, never acted on), and a smaller value is refused at start-up. 0 = keep.",
    "outbox_retention_s": "Age (since staged) after which *published* outbox rows are pruned (unpublished rows never are). 0 = keep.",
    "jobs_retention_s": "Age (since last update) after which finished backup/restore/erase jobs and their riders are pruned (pending and running jobs never are). 0 = keep.",
    "drills_retention_s": "Age after which restore-drill reports are pruned (the catalogue keeps each backup's last drill result). 0 = keep.",
    "ticks_retention_s": "Age after which the scheduler's per-tenant tick state of tenants no longer active or suspended is pruned. 0 = keep.",
    "backup_target": "Where backups go: `local`, `s3` or `sftp`.",
    "backup_local_dir": "Folder of the `local` backup target (a mounted volume, say). Made at a worker's start if missing, never after: while it is missing (unmounted, moved), backups, restores, listings and deletions wait and retry (transient) instead of writing beside the mount point or reporting its artifacts `not_found`.",
    "backup_master_recipient": "age X25519 public key that wraps the per-tenant backup keys.",
    "backup_master_identity_file": "age identity file; given to restore-capable workers only.",
    "erase_archive_recipients": "Operator age recipients (comma-separated) an erase archive is encrypted to; empty = archives refused.",
    "backup_zstd_level": "zstd compression level.",
    "backup_zstd_threads": "zstd threads (0 = one per core).",
    "backup_chunk_bytes": "Streaming chunk size of the dump pipeline.",
    "backup_rate_limit_bytes": "Upload rate limit in bytes/s (0 = unlimited).",
    "backup_max_attempts": "Attempts (claims) of one backup, restore or erase job before its `*Failed` result; a job whose worker dies every time fails with reason `attempts`.",
    "backup_count_budget_ms": "Time for the manifest's exact row counts of one backup (its own budget, not the pool's statement timeout); tables that don't fit get an estimate in `row_counts_estimated`. 0 = estimates only.",
    "backup_retry_base_s": "First backoff delay between backup attempts.",
    "backup_retry_max_s": "Cap of that backoff.",
    "backup_lease_s": "Lease of a running backup job.",
    "backup_poll_interval_s": "How often backup workers look for jobs.",
    "backup_retention": "Per plan `keep-last/dailies/weeklies`, e.g. `free=3/7/0,pro=7/14/8`.",
    "erase_drop_batch": "Tables an erase drops per transaction, keeping each transaction below `max_locks_per_transaction`.",
    "migration_lock_timeout_ms": "`lock_timeout` (ms) of a tenant's migration, by a rollout or after a restore: a migration waiting longer for a lock rolls back and is retried (transient), so it never blocks the tenant's traffic for long.",
    "migration_statement_timeout_ms": "`statement_timeout` (ms) of each statement of a tenant's migration: a rollout's migration that exceeds it fails (`TenantMigrationFailed{timeout}`) instead of retrying; after a restore it is retried.",
    "restore_grace_s": "How long the schema replaced by a restore is kept.",
    "restore_spool_dir": "Where a restore spools the encrypted artifact (mode 0600) to verify its sha256 before restoring it; needs room for the largest artifact. Unset: the system temp directory.",
    "s3_bucket": "S3 bucket.",
    "s3_prefix": "Key prefix inside the bucket.",
    "s3_endpoint_url": "S3 endpoint (MinIO, moto); unset = AWS.",
    "s3_region": "S3 region.",
    "s3_access_key_id": "S3 access key (required with `backup_target=s3`).",
    "s3_secret_access_key": "S3 secret key (required with `backup_target=s3`).",
    "s3_create_bucket": "Create the bucket if it is missing.",
    "s3_part_bytes": "Multipart upload part size.",
    "sftp_host": "SFTP server.",
    "sftp_port": "SFTP port.",
    "sftp_user": "SFTP user.",
    "sftp_key_file": "SFTP private key (required with `backup_target=sftp`).",
    "sftp_known_hosts": "known_hosts file the server's host key is checked against (required with `backup_target=sftp`).",
    "sftp_dir": "Remote folder for backups. Made at a worker's start if missing, never after: while it is missing on the server (a volume unmounted, a folder moved), backups, restores, listings and deletions wait and retry (transient) instead of writing beside the mount point or reporting its artifacts `not_found`.",
    "api_host": "Address of the HTTP API (role `api`).",
    "api_port": "Its port, with its own `/healthz` and `/readyz` (0 = any free port).",
    "api_jwks_file": "JWKS file whose RS256/EdDSA public keys verify bearer tokens. The `api` role needs this, `api_jwks_url` or the HS256 flag to start.",
    "api_jwks_url": "Or the issuer's JWKS URL (https; http only to loopback with `api_jwks_allow_http_loopback`). Fetched asynchronously; unreachable at start: the API starts, `/readyz` answers 503 and tokens get 401 until it answers.",
    "api_jwks_ttl_s": "Seconds a fetched key set is used before it is fetched again.",
    "api_jwks_min_refresh_s": "A token with a `kid` the set lacks (a rotation) fetches the set again, at most once per this many seconds (a flood of bogus kids costs the issuer one request per interval).",
    "api_jwks_fetch_timeout_s": "Timeout of one JWKS fetch.",
    "api_jwks_allow_http_loopback": "Development only: accept an `http://` JWKS URL on a loopback host.",
    "api_jwt_audience": "The `aud` every token must carry.",
    "api_jwt_issuer": "The `iss` every token must carry; unset = not checked.",
    "api_dev_hs256": "Development only: also accept HS256 tokens signed with `api_hs256_secret`.",
    "api_hs256_secret": "The HS256 shared secret (refused without `api_dev_hs256`).",
    "api_rate_limit_read": "GET requests per client (`sub`) and route: `count/seconds`, GCRA in Redis, shared by every API process.",
    "api_rate_limit_write": "The same for commands (POST).",
    "api_max_body_bytes": "Larger request bodies are answered 413 and change nothing.",
    "api_idempotency_ttl_s": "How long an `Idempotency-Key` maps to its first operation (at least 24 h).",
    "api_page_size_max": "Largest `page_size` of the list routes.",
    "api_publish_timeout_s": "An operation whose request is not known published this long after its last attempt (its process died) is published again with the same event ids.",
    "api_operations_retention_s": "Finished operations are pruned this long after they finish, never while their idempotency key lives (0: kept forever).",
    "http_host": "Address of the `/healthz`, `/readyz`, `/metrics` listener.",
    "http_port": "Its port (0 = any free port).",
    "log_level": "`DEBUG`, `INFO`, `WARNING` or `ERROR` (JSON logs on stderr).",
    "shutdown_grace_s": "On SIGTERM, how long in-flight handlers and the relay may finish.",
    "startup_timeout_s": "Seconds a starting worker retries (with backoff) PostgreSQL and Kafka before it exits naming the dependency; a PostgreSQL that is shutting down, starting up or in recovery counts as not there yet.",
    "readiness_timeout_s": "Timeout (s) of each dependency probe of `/readyz` (workers and the API); a slower dependency is reported down.",
    "lag_interval_s": "Seconds between refreshes of the `tenant_consumer_lag` gauge (highwater minus committed offset, per assigned partition).",
    "source": "CloudEvents `source` of the results this service emits.",
    "metrics_interval": "Seconds between `MetricsDue` ticks; windows are aligned to the Unix epoch, so every scheduler computes the same ones.",
    "backup_schedules": "Per plan, when scheduled `BackupDue` ticks fall, in UTC: five-field cron, a macro (`@daily`, `@hourly`...) or `@every <n>[s|m|h|d]`; JSON or `plan=expr` items separated by `;`.",
    "backup_default_schedule": "Backup schedule of a plan missing from `TENANT_BACKUP_SCHEDULES` (same syntax).",
    "scheduler_catch_up": "Windows a scheduler missed (no leader, downtime) are emitted on takeover: `latest` = only the newest per tenant and for metrics, `all` = every one, up to `TENANT_SCHEDULER_CATCH_UP_MAX`.",
    "scheduler_catch_up_max": "With `TENANT_SCHEDULER_CATCH_UP=all`, the most missed windows emitted per tenant (and for metrics): the newest; older ones are dropped.",
    "scheduler_lock_id": "Advisory-lock key that elects the single scheduler leader (role `scheduler`).",
    "scheduler_poll_s": "Seconds between a standby scheduler's tries of the leader lock (a dead leader process is replaced within about this), and the longest the leader sleeps between looks for due ticks.",
    "scheduler_batch_size": "Ticks published per batch in a scheduler round; each batch's windows are recorded in the scheduler state once published.",
    "metrics_redis_ttl_s": "TTL (s) of each tenant's latest metrics snapshot in Redis (`tenant:<id>:metrics`); without one, `tenantctl` reads the Postgres history.",
    "metrics_redis_scan_count": "`COUNT` hint of each Redis `SCAN` call of a metrics tick's pass over `tenant:*`.",
    "metrics_redis_max_keys": "Redis keys a metrics tick examines at most; past it the pass stops and key counts are lower bounds (`estimated`).",
    "metrics_redis_sample_keys": "Keys per tenant measured with `MEMORY USAGE`; the tenant's Redis bytes are the mean sampled size times its key count (an estimate when it has more keys).",
    "metrics_history_length": "Metrics ticks kept in the Postgres history; older ticks are pruned (288 = one day at the default interval).",
    "quota_size_bytes": "Per plan, the schema size in bytes (tables, TOAST, indexes) above which each metrics tick emits `TenantQuotaExceeded{size_bytes}`; a plan without an entry has no limit. JSON or `plan=value` items separated by `;`.",
    "quota_connections": "Per plan, the tenant's open database connections above which each metrics tick emits `TenantQuotaExceeded{connections}`; a plan without an entry has no limit.",
    "backup_rpo_s": "Recovery point objective (s): active or suspended tenants whose last backup (or creation) is older are counted by the `tenant_backups_over_rpo` gauge.",
    "backup_freshness_interval_s": "Seconds between recomputations of the backup-age gauges (`tenant_backup_oldest_age_seconds`, `tenant_backups_over_rpo`, `tenant_backup_age_tenants`) by every metrics worker.",
}
_BACKUP_PREFIXES = ("backup_", "restore_", "s3_", "sftp_")


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(
        rf"(<!-- BEGIN GENERATED: {name}\b[^>]*-->\n).*?(<!-- END GENERATED: {name} -->)", re.S
    )
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- BEGIN/END GENERATED: {name} --> markers")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text, count=1)


def event_catalogue() -> str:
    rows = [
        "| Type | Topic | Key | Producer | Data fields | Meaning |",
        "|---|---|---|---|---|---|",
    ]
    for name, model in EVENT_TYPES.items():
        producer, meaning = EVENTS.get(name, ("?", "(not described yet)"))
        key = f"`{ALL_TENANTS}`" if "tenant_id" not in model.model_fields else "tenant_id"
        kind = "input" if model in INPUTS else "result"
        rows.append(
            _row(f"`{name}` ({kind})", f"`{model.topic}`", key, producer, _fields(model), meaning)
        )
    return "\n".join(rows) + "\n"


def _row(*cells: str) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _fields(model: type[Event]) -> str:
    parts = []
    for name, field in model.model_fields.items():
        label = f"`{name}`" if field.is_required() else f"`{name}`?"
        literal = _literal_values(field.annotation)
        parts.append(f"{label} ({'/'.join(literal)})" if literal else label)
    return ", ".join(parts)


def _literal_values(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is Literal:
        return [str(v) for v in typing.get_args(annotation)]
    return []


def settings_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = field.description or SETTINGS.get(name, "(not described yet)")
        if name.startswith(_BACKUP_PREFIXES):
            meaning += " *(backups)*"
        bounds = _bounds(field)
        allowed = f" Allowed: {bounds}." if bounds else ""
        default = _default(field, _default_separator(name))
        rows.append(_row(f"`{ENV_PREFIX}{name.upper()}`", default, meaning + allowed))
    return "\n".join(rows) + "\n"


def _default_separator(name: str) -> str:
    """How the items of a per-plan default are joined, so the shown value is one it accepts:
    the scheduling settings' items are `;`-separated (cron expressions contain commas)."""
    return ";" if name in SchedulingSettings.model_fields else ","


def _default(field: FieldInfo, sep: str = ",") -> str:
    value = field.default
    if value is PydanticUndefined:
        return "**required**"
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, frozenset | set):
        value = ",".join(sorted(value))
    elif isinstance(value, tuple | list):
        value = ",".join(map(str, value))
    elif isinstance(value, dict):
        value = sep.join(
            f"{k}={'/'.join(map(str, v)) if isinstance(v, tuple | list) else v}"
            for k, v in value.items()
        )
    elif isinstance(value, Path):
        home = str(Path.home())
        value = "~" + str(value)[len(home) :] if str(value).startswith(home + "/") else str(value)
    elif isinstance(value, Enum):
        value = value.value
    return f"`{value}`" if str(value) != "" else "(empty)"


_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
)


def _bounds(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for cls, attr, op in _BOUNDS:
            if isinstance(meta, cls):
                parts.append(f"{op} {getattr(meta, attr)}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            parts.append(f"`{pattern}`")
    literal = _literal_values(field.annotation)
    if isinstance(field.annotation, types.UnionType):
        literal = []
    if literal:
        parts.append(" / ".join(f"`{v}`" for v in literal))
    return ", ".join(parts)


# ---- tenantctl: the command table and the exit codes, read from the CLI itself ---------------


def cli_table() -> str:
    """One row per tenantctl command: its arguments, what it does, and every option with its help."""
    from typer.main import get_command

    from tenantctl.cli import app

    rows = ["| Command | What it does | Arguments and options |", "|---|---|---|"]
    for name, command in _cli_commands(get_command(app), "tenantctl"):
        args = " ".join(
            p.metavar or p.name.upper()
            for p in command.params
            if p.param_type_name == "argument" and p.name
        )
        options = [
            f"`{p.metavar}`: {_cli_help(p)}"
            for p in command.params
            if p.param_type_name == "argument" and p.help and p.metavar != "TENANT_ID"
        ] + [
            f"`{_option_usage(p)}`: {_cli_help(p)}"
            for p in command.params
            if p.param_type_name == "option" and p.name != "help"
        ]
        doc = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
        rows.append(_row(f"`{name} {args}`".replace(" `", "`"), doc, "<br>".join(options) or "-"))
    return "\n".join(rows) + "\n"


def _cli_commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        if getattr(command, "commands", None):
            found.extend(_cli_commands(command, f"{prefix} {name}"))
        else:
            found.append((f"{prefix} {name}", command))
    return found


def _option_usage(option: Any) -> str:
    name = str(max(option.opts, key=len))
    if option.is_flag:
        return name
    kind: Any = option.type_descriptor.annotation
    if isinstance(kind, type) and issubclass(kind, Enum):
        value = "|".join(str(c.value) for c in kind)
    elif kind is float:
        value = "SECONDS" if "timeout" in name else "N"
    else:
        value = {int: "N", Path: "FILE"}.get(kind, "TEXT")
    assert isinstance(value, str)
    return f"{name} {value}" + (" ..." if option.multiple else "")


def _cli_help(param: Any) -> str:
    text = (param.help or "(no help)").rstrip(".")
    default = param.default
    if default not in (None, False, "", ()) and not param.is_flag:
        text += f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
    return text + "."


def exit_codes_table() -> str:
    """The exit codes every tenantctl command uses (tenantctl.output.ExitCode)."""
    from tenantctl.output import MEANING

    rows = ["| Exit code | Meaning |", "|---|---|"]
    rows.extend(_row(str(int(code)), meaning) for code, meaning in MEANING.items())
    return "\n".join(rows) + "\n"
