"""Pruning of the control schema's bookkeeping rows, by age, one bounded batch at a time.

Each call deletes at most ``batch`` rows in its own short transaction, so pruning a backlog of
millions never holds locks or bloats WAL in one go, and the caller can stop between batches.
What may be pruned is fixed here, not by the caller: never an unsent outbox row, never a job
that is pending or running (its riders go with their job, by the foreign key's cascade).
"""

# Table names are quote_ident()-ed from settings, never from input; values are bind parameters.
# ruff: noqa: S608

import asyncpg

from adapters.postgres.errors import translated
from domain.tenant_ids import quote_ident

# table -> (age column, extra condition); each has an index on the age column (control 0010,
# the outbox's 0015).
_PRUNABLE: dict[str, tuple[str, str]] = {
    "inbox": ("processed_at", "TRUE"),
    # Published rows only: an id still in outbox_pending is a result not yet on Kafka.
    "outbox": (
        "created_at",
        "NOT EXISTS (SELECT 1 FROM {control}.outbox_pending p WHERE p.id = outbox.id)",
    ),
    "backup_jobs": ("updated_at", "status IN ('succeeded', 'failed')"),
    "restore_drills": ("drilled_at", "TRUE"),
    # Finished parked records; a waiting one is never pruned (it is still to be handled).
    "parked_events": ("finished_at", "status IN ('done', 'dead_lettered')"),
    # Keys past their expiry (the API honours each at least api_idempotency_ttl_s).
    "api_idempotency_keys": ("expires_at", "TRUE"),
    # Finished operations whose idempotency key has expired (a live key must still answer it).
    "api_operations": (
        "updated_at",
        "done AND NOT EXISTS (SELECT 1 FROM {control}.api_idempotency_keys k"
        " WHERE k.operation_id = api_operations.operation_id)",
    ),
    # The tick state of a tenant that is gone (erased, or dropped from the registry).
    "scheduler_state": (
        "updated_at",
        "kind = 'BackupDue' AND NOT EXISTS (SELECT 1 FROM {control}.tenants t"
        " WHERE t.tenant_id = subject AND t.status IN ('active', 'suspended'))",
    ),
}
TABLES = tuple(_PRUNABLE)


class PostgresRetention:
    """Deletes rows older than an age from the prunable tables of one control schema."""

    def __init__(self, control_schema: str) -> None:
        control = quote_ident(control_schema)
        self._counted = {
            t: f"{control}.{quote_ident(t)}" for t in (*_PRUNABLE, "backup_job_riders")
        }
        self._sql = {
            table: (
                f"DELETE FROM {control}.{quote_ident(table)} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {control}.{quote_ident(table)}"
                f" WHERE {column} < now() - make_interval(secs => $1)"
                f" AND {condition.format(control=control)} LIMIT $2 FOR UPDATE SKIP LOCKED))"
            )
            for table, (column, condition) in _PRUNABLE.items()
        }

    async def prune_batch(
        self, conn: asyncpg.Connection, table: str, older_than_s: float, batch: int
    ) -> int:
        """Delete up to ``batch`` rows of ``table`` older than ``older_than_s``; returns how many
        (fewer than ``batch``: nothing older is left)."""
        with translated(f"prune {table}"):
            status = await conn.execute(self._sql[table], older_than_s, batch)
        return int(status.split()[-1])

    async def sizes(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Row counts of the prunable tables and the riders (for benches and tests: a count
        scans the table)."""
        with translated("retention sizes"):
            return {
                table: int(await conn.fetchval(f"SELECT count(*) FROM {name}"))
                for table, name in self._counted.items()
            }
