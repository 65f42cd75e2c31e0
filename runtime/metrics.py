"""Prometheus series. Labels are bounded: event type, group, outcome, topic, partition — never a
tenant id (10,000 tenants x N series would swamp Prometheus; per-tenant figures go to events)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "tenant_events_total",
    "Input events by consumer group, type and outcome "
    "(processed, duplicate, dead_lettered, retried, handed_back, parked)",
    ["group", "type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "tenant_handler_duration_seconds",
    "Time to handle one event, from decode to durable commit",
    ["group", "type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CONSUMER_LAG = Gauge(
    "tenant_consumer_lag",
    "Highwater minus committed offset, per assigned partition",
    ["group", "topic", "partition"],
)
OUTBOX_BACKLOG = Gauge("tenant_outbox_backlog", "Outbox rows not yet published")
OUTBOX_OLDEST_AGE = Gauge(
    "tenant_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row"
)
OUTBOX_PUBLISHED = Counter("tenant_outbox_published_total", "Outbox rows published to Kafka")
RELAY_LEADER = Gauge("tenant_outbox_relay_leader", "1 while this process holds the relay lease")
CIRCUIT_OPEN = Gauge(
    "tenant_circuit_open", "1 while a consumer group's circuit breaker is open", ["group"]
)
DEPENDENCY_UP = Gauge("tenant_dependency_up", "Last readiness probe result", ["dependency"])
# One series per pg_catalog table ever vacuumed (a few dozen at most): bounded.
CATALOG_VACUUMS = Counter(
    "tenant_catalog_vacuums_total",
    "VACUUMs of a system catalogue by the catalogue upkeep job (dead rows over its threshold)",
    ["catalog"],
)

# ---- scheduling and per-tenant metrics ---------------------------------------------------------
# Backup freshness without a tenant label: at 10,000 tenants a per-tenant gauge is 10,000 series
# per worker that churn as tenants come and go, for a question Prometheus answers in aggregate
# ("is anyone past the RPO, and how far?"). We export the worst age, the count over the RPO and a
# fixed-bucket distribution (7 series whatever the tenant count); which tenants are late is a
# query for `tenantctl backups` / the catalog, and per-tenant figures travel as events.
BACKUP_OLDEST_AGE = Gauge(
    "tenant_backup_oldest_age_seconds",
    "Seconds since the last successful backup of the tenant that has gone longest without one",
)
BACKUP_OVER_RPO = Gauge(
    "tenant_backups_over_rpo", "Active or suspended tenants whose last backup is older than the RPO"
)
BACKUP_AGE_TENANTS = Gauge(
    "tenant_backup_age_tenants",
    "Tenants whose last successful backup is at most `le` seconds old (cumulative buckets)",
    ["le"],
)
SCHEDULER_LEADER = Gauge(
    "tenant_scheduler_leader", "1 while this process holds the scheduler lease"
)
SCHEDULER_TICKS = Counter("tenant_scheduler_ticks_total", "Ticks emitted by kind", ["kind"])
SCHEDULER_ROUND_SECONDS = Histogram(
    "tenant_scheduler_round_duration_seconds",
    "One scheduler round: registry read, due windows, publish, state write",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
METRICS_TICK_SECONDS = Histogram(
    "tenant_metrics_tick_duration_seconds",
    "One MetricsDue tick over every tenant, inbox to commit",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
METRICS_TENANTS = Gauge("tenant_metrics_tenants_collected", "Tenants collected by the last tick")
METRICS_TICK_STATEMENTS = Gauge(
    "tenant_metrics_tick_statements", "SQL statements of the last tick (constant in tenant count)"
)
