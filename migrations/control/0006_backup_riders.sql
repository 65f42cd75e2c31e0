-- A BackupDue accepted while the same tenant already has a backup job waiting to start rides on
-- that job: the one backup, taken after both requests arrived, answers both (one result per
-- request, the same backup_id). The queue holds at most one waiting backup per tenant however
-- many requests arrive, so one tenant's burst can't push every other tenant's backup back.
CREATE TABLE backup_job_riders (
    cause_id       text PRIMARY KEY,          -- the BackupDue that rode (causationid of its result)
    job_id         text NOT NULL REFERENCES backup_jobs (job_id) ON DELETE CASCADE,
    correlation_id text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backup_job_riders_job ON backup_job_riders (job_id);
