"""Prunes bookkeeping rows (inbox, finished parked records, published outbox rows, finished jobs and
their riders, drill reports, gone tenants' tick state, the API's finished operations and expired
idempotency keys) by age, from one leader at a time.

Runs under the shared leader loop with its own lock (``retention_lock_id``), in every ``relay``
worker: whichever holds the lock prunes, every ``retention_interval_s``. Each table is pruned in
batches of ``retention_batch_size`` rows, one short transaction each, until a batch comes back
short; a stop request is honoured between batches. What may be pruned at all (never an unsent
outbox row, never an unfinished job) is decided by the adapter, ages by the settings.
"""

from typing import Protocol

import asyncpg
import structlog

from producers.leader import PeriodicLeaderJob
from runtime.settings import Settings

log = structlog.get_logger(__name__)


class RetentionStore(Protocol):
    """Deletes one bounded batch of rows older than an age; returns how many it deleted."""

    async def prune_batch(
        self, conn: asyncpg.Connection, table: str, older_than_s: float, batch: int
    ) -> int: ...


def retention_ages(settings: Settings) -> dict[str, float]:
    """Table -> age in seconds past which its rows are pruned; tables kept forever are absent."""
    ages = {
        "inbox": settings.inbox_keep_s,
        # A finished parked row answers a redelivery of its record as the inbox row does.
        "parked_events": settings.inbox_keep_s,
        "outbox": settings.outbox_retention_s,
        "backup_jobs": settings.jobs_retention_s,
        "restore_drills": settings.drills_retention_s,
        "scheduler_state": settings.ticks_retention_s,
        # Keys are already kept their full TTL (expires_at); a minute past it they go. Before
        # operations, so an operation whose key just expired can go in the same round.
        "api_idempotency_keys": 60.0,
        "api_operations": settings.api_operations_retention_s,
    }
    return {table: age for table, age in ages.items() if age > 0}


class Retention(PeriodicLeaderJob):
    """Prunes every ``retention_interval_s`` while holding the retention lock."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, store: RetentionStore) -> None:
        self._s, self._pool, self._store = settings, pool, store
        self._ages = retention_ages(settings)
        self.pruned: dict[str, int] = dict.fromkeys(self._ages, 0)  # since start, per table
        self.rounds = 0
        super().__init__(
            settings,
            "retention",
            settings.names.retention_lock_id,
            settings.retention_interval_s,
            self.prune_once,
        )

    async def prune_once(self) -> dict[str, int]:
        """One round over every table; returns rows deleted per table."""
        deleted: dict[str, int] = {}
        batch = self._s.retention_batch_size
        for table, age in self._ages.items():
            deleted[table] = 0
            while not self.stopping:
                async with self._pool.acquire() as conn:
                    n = await self._store.prune_batch(conn, table, age, batch)
                deleted[table] += n
                if n < batch:
                    break
            self.pruned[table] += deleted[table]
        self.rounds += 1
        if any(deleted.values()):
            log.info("retention_pruned", **deleted)
        return deleted
