-- An operation keeps its request events until they are known to be on Kafka, so one saved by a
-- process that died before publishing is published again (same event ids: the consumers' inbox
-- makes a second copy a no-op) instead of holding its tenant's one running slot forever.
ALTER TABLE api_operations
    ADD COLUMN requests jsonb,
    ADD COLUMN published boolean NOT NULL DEFAULT false,
    -- The last re-publish claim; until the first, the operation's created_at is the attempt.
    ADD COLUMN publish_attempt_at timestamptz;
-- Rows from before kept no requests: a finished one needs nothing; a running one is failed as
-- unavailable once it is overdue (it cannot be re-published).
UPDATE api_operations SET published = true WHERE done;

-- Retention prunes finished operations by age (and expired idempotency keys by expiry).
CREATE INDEX api_operations_finished ON api_operations (updated_at) WHERE done;
