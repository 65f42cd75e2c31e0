-- The service's own tables, created in the control schema (search_path is set by the runner).

-- One row per tenant ever requested; an erased tenant stays as a tombstone so its id is not reused.
CREATE TABLE tenants (
    tenant_id      text PRIMARY KEY,
    schema_name    text NOT NULL UNIQUE,
    role_name      text NOT NULL UNIQUE,
    plan           text NOT NULL,
    status         text NOT NULL CHECK (status IN ('active', 'suspended', 'erased')),
    schema_version integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Inbox: an event id is processed at most once per consumer group. Written in the same
-- transaction as the effect, so "row exists" means "effect committed".
CREATE TABLE inbox (
    consumer_group text NOT NULL,
    event_id       text NOT NULL,
    event_type     text NOT NULL,
    tenant_id      text,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);

-- Outbox: result events, written with the effect, published by the relay in id order.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_id    text NOT NULL UNIQUE,
    topic       text NOT NULL,
    key         bytea NOT NULL,
    event_type  text NOT NULL,
    payload     bytea NOT NULL,
    headers     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
