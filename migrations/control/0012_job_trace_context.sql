-- The W3C trace context of the request that queued a job (and of each request riding on one), so
-- the job runner, which writes the results long after the request's span has ended, continues
-- each request's own trace. NULL: the request carried none (or was queued before this column).
ALTER TABLE backup_jobs ADD COLUMN traceparent text, ADD COLUMN tracestate text;
ALTER TABLE backup_job_riders ADD COLUMN traceparent text, ADD COLUMN tracestate text;
