-- Retention prunes bookkeeping rows by age in small batches; each batch must find its rows
-- without scanning the table. Partial indexes cover only what can ever be pruned: sent outbox
-- rows and finished jobs (unsent rows and waiting or running jobs are never deleted).
CREATE INDEX inbox_by_age ON inbox (processed_at);
CREATE INDEX outbox_sent_by_age ON outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX backup_jobs_finished_by_age ON backup_jobs (updated_at)
    WHERE status IN ('succeeded', 'failed');
CREATE INDEX restore_drills_by_age ON restore_drills (drilled_at);
