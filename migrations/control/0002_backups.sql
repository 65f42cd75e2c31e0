-- Backups, restores and per-tenant backup keys.

-- Jobs accepted from tenants.backups. The Kafka handler only inserts a row (fast, inside the
-- poll interval); runners claim rows with a lease and do the long work outside the poll loop.
CREATE TABLE backup_jobs (
    job_id        text PRIMARY KEY,           -- = backup id for backups, deterministic from the event id
    kind          text NOT NULL CHECK (kind IN ('backup', 'restore')),
    tenant_id     text NOT NULL,
    cause_id      text NOT NULL,              -- the event that asked for it (causationid of the result)
    correlation_id text NOT NULL,
    backup_id     text,                       -- restore: which backup ('latest' resolved at run time)
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    progress_bytes bigint NOT NULL DEFAULT 0,
    not_before    timestamptz NOT NULL DEFAULT now(),
    lease_owner   text,
    lease_until   timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backup_jobs_ready ON backup_jobs (not_before) WHERE status IN ('pending', 'running');

-- The catalog: only complete, verified artifacts are ever inserted here.
CREATE TABLE backups (
    backup_id      text PRIMARY KEY,
    tenant_id      text NOT NULL,
    target         text NOT NULL,
    uri            text NOT NULL,
    artifact_key   text NOT NULL,
    manifest_key   text NOT NULL,
    bytes          bigint NOT NULL,
    sha256         text NOT NULL,
    schema_version integer NOT NULL,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL,
    last_drill_at  timestamptz,
    last_drill_ok  boolean
);
CREATE INDEX backups_by_tenant ON backups (tenant_id, finished_at DESC);

-- One X25519 age identity per tenant, wrapped (age-encrypted) to the master recipient.
-- Deleting a row crypto-shreds every backup of that tenant, wherever copies went.
CREATE TABLE tenant_keys (
    tenant_id        text PRIMARY KEY,
    recipient        text NOT NULL,
    wrapped_identity bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Schemas replaced by a restore, kept until a grace period ends.
CREATE TABLE replaced_schemas (
    schema_name text PRIMARY KEY,
    tenant_id   text NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now(),
    drop_after  timestamptz NOT NULL
);

-- Restore drills (tenantctl backup verify).
CREATE TABLE restore_drills (
    drill_id    bigserial PRIMARY KEY,
    backup_id   text NOT NULL,
    tenant_id   text NOT NULL,
    ok          boolean NOT NULL,
    report      jsonb NOT NULL,
    drilled_at  timestamptz NOT NULL DEFAULT now()
);
