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

-- The API's reads run as this role: SELECT only, on the tables it shows. It cannot log in; the
-- API's read pool switches to it (SET ROLE) for every session, read-only by default.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenant_api_reader') THEN
        CREATE ROLE tenant_api_reader NOLOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO tenant_api_reader', current_schema());
    EXECUTE format(
        'GRANT SELECT ON %1$I.tenants, %1$I.backups, %1$I.tenant_metrics, %1$I.outbox,'
        ' %1$I.api_operations, %1$I.backup_jobs, %1$I.migration_rollouts TO tenant_api_reader',
        current_schema());
    IF NOT pg_has_role(current_user, 'tenant_api_reader', 'MEMBER') THEN
        GRANT tenant_api_reader TO CURRENT_USER;
    END IF;
END
$$;
