-- A restore's swap is recorded on its job, in the swap's own transaction (fenced on the lease):
-- a retry after a committed swap resumes after it and never swaps again.
ALTER TABLE backup_jobs ADD COLUMN swapped_at timestamptz;
ALTER TABLE backup_jobs ADD COLUMN replaced_schema text;
ALTER TABLE backup_jobs ADD COLUMN restored_backup_id text;
