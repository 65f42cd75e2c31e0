-- Scheduler state and per-tenant metrics history.

-- The last window the scheduler emitted, per tick kind and subject (a tenant id, or '__all__'
-- for MetricsDue). Only advanced, never moved back: a late write from a deposed leader is a no-op.
CREATE TABLE scheduler_state (
    kind        text NOT NULL,
    subject     text NOT NULL,
    last_window timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, subject)
);

-- One row per collected MetricsDue window. History is pruned by tick: keeping the newest N ticks
-- keeps at most N snapshots per tenant without a per-tenant window query on every insert.
CREATE TABLE metrics_ticks (
    window_start timestamptz PRIMARY KEY,
    event_id     text NOT NULL,
    collected_at timestamptz NOT NULL,
    tenants      integer NOT NULL,
    statements   integer NOT NULL,
    duration_s   double precision NOT NULL
);

CREATE TABLE tenant_metrics (
    tenant_id       text NOT NULL,
    window_start    timestamptz NOT NULL REFERENCES metrics_ticks ON DELETE CASCADE,
    collected_at    timestamptz NOT NULL,
    plan            text NOT NULL,
    size_bytes      bigint NOT NULL,
    table_count     integer NOT NULL,
    live_tuples     bigint NOT NULL,
    dead_tuples     bigint NOT NULL,
    bloat_bytes     bigint NOT NULL,
    seq_scans       bigint NOT NULL,
    idx_scans       bigint NOT NULL,
    cache_hit_ratio double precision,
    last_vacuum     timestamptz,
    last_analyze    timestamptz,
    connections     integer NOT NULL,
    redis_bytes     bigint NOT NULL,
    redis_keys      bigint NOT NULL,
    redis_estimated boolean NOT NULL,
    PRIMARY KEY (tenant_id, window_start)
);
CREATE INDEX tenant_metrics_by_window ON tenant_metrics (window_start);
