-- The master recipient every tenant key is wrapped to, pinned by the first backup worker. A worker
-- configured with another master would wrap new tenant keys that the real master can't unwrap.
CREATE TABLE backup_master (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    recipient text NOT NULL,
    pinned_at timestamptz NOT NULL DEFAULT now()
);
