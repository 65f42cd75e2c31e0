-- The HTTP API. Commands answer with an operation (AIP-151) that is done once the result event
-- of its request is in the outbox; a repeated Idempotency-Key maps to its first operation.
CREATE TABLE api_operations (
    operation_id   text PRIMARY KEY,
    kind           text NOT NULL,
    tenant_id      text,
    actor          text NOT NULL,
    event_ids      text[] NOT NULL,
    correlation_id text NOT NULL,
    done           boolean NOT NULL DEFAULT false,
    result         jsonb,
    error          jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- At most one running operation per tenant: a second command conflicts (HTTP 409) instead of
-- queueing behind the first where the caller cannot see it.
CREATE UNIQUE INDEX api_operations_one_running
    ON api_operations (tenant_id) WHERE NOT done AND tenant_id IS NOT NULL;

CREATE TABLE api_idempotency_keys (
    actor        text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    operation_id text NOT NULL REFERENCES api_operations ON DELETE CASCADE,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (actor, key)
);
CREATE INDEX api_idempotency_keys_expiry ON api_idempotency_keys (expires_at);

-- A tenant's timeline is read from its result events in the outbox, by Kafka key.
CREATE INDEX outbox_by_key ON outbox (key, id);

-- The API's reads run as a read-only role (<ns>_tenant_api_reader: roles are cluster-wide, so
-- each deployment has its own). It is named by the deployment, so it is created and granted at
-- every start-up (adapters/postgres/control_schema.py), not here.
