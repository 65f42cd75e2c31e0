"""Prometheus series. Labels are bounded: event type, group, outcome, topic, partition — never a
tenant id (10,000 tenants x N series would swamp Prometheus; per-tenant figures go to events)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "tenant_events_total",
    "Input events by consumer group, type and outcome "
    "(processed, duplicate, dead_lettered, retried, handed_back)",
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
