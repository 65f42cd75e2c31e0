-- Lifecycle: erase jobs run on the backup job runner (they may take a final backup first), and
-- migration rollouts are recorded so a halted rollout stops every tenant still queued.

ALTER TABLE backup_jobs DROP CONSTRAINT backup_jobs_kind_check;
ALTER TABLE backup_jobs ADD CONSTRAINT backup_jobs_kind_check
    CHECK (kind IN ('backup', 'restore', 'erase'));
ALTER TABLE backup_jobs ADD COLUMN archive boolean NOT NULL DEFAULT false;

CREATE TABLE migration_rollouts (
    rollout_id     text PRIMARY KEY,
    target_version integer NOT NULL,
    canary         integer NOT NULL DEFAULT 0,
    max_failures   integer NOT NULL,
    status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'halted', 'done')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
