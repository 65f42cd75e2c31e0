"""Keeps the warm pool at ``warm_pool_size`` schemas of the latest template, from one leader.

Runs under the shared leader loop with its own lock (``Names.warm_pool_lock_id``), in every
``provisioner`` worker when the pool is on: whichever holds the lock refills. One action per
short transaction (make one pooled schema, or drop one made from an older template or beyond
the size), each decided afresh from the pool as it is (domain.warm_pool.next_refill), since
provisioners claim from it meanwhile; a stop request is honoured between actions. A full pool is
looked at again every ``warm_pool_refill_interval_s``.
"""

from collections import Counter
from typing import Protocol

import asyncpg
import structlog

from domain.warm_pool import RefillAction, next_refill
from producers.leader import PeriodicLeaderJob
from runtime.settings import Settings

log = structlog.get_logger(__name__)
# How soon a refill that yielded to claiming provisioners looks again.
_YIELD_S = 0.2


class WarmPoolStore(Protocol):
    """The pool's rows and objects; each call runs in the caller's transaction."""

    latest: int

    async def counts(self, conn: asyncpg.Connection) -> dict[int, int]: ...
    async def add(self, conn: asyncpg.Connection) -> str: ...
    async def discard(self, conn: asyncpg.Connection, *, stale: bool) -> str | None: ...


class WarmPoolRefill(PeriodicLeaderJob):
    """Refills every ``warm_pool_refill_interval_s`` while holding the warm pool's lock."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, store: WarmPoolStore) -> None:
        self._pool, self._store = pool, store
        self._size = settings.warm_pool_size
        self.done: Counter[str] = Counter()  # actions since start
        self._last_total: int | None = None  # pooled schemas at the last look
        super().__init__(
            settings,
            "warm-pool",
            settings.names.warm_pool_lock_id,
            settings.warm_pool_refill_interval_s,
            self.refill_once,
        )

    async def refill_once(self) -> Counter[str]:
        """Act until the pool is as it should be (or only held rows are left to drop)."""
        done: Counter[str] = Counter()
        while not self.stopping:
            async with self._pool.acquire() as conn:
                counts = await self._store.counts(conn)
                total = sum(counts.values())
                # Fewer than at the last look: provisioners claimed meanwhile (the refill's own
                # actions only add, or drop what next_refill never answers with a yield).
                claiming = self._last_total is not None and total < self._last_total
                self._last_total = total
                action = next_refill(
                    counts, latest=self._store.latest, size=self._size, claiming=claiming
                )
                if action == RefillAction.NONE:
                    break
                if action == RefillAction.YIELD:
                    await self.pause(_YIELD_S)
                    continue
                async with conn.transaction():
                    if action == RefillAction.CREATE:
                        await self._store.add(conn)
                    elif (
                        await self._store.discard(conn, stale=action == RefillAction.DISCARD_STALE)
                        is None
                    ):
                        break  # the rows to drop are being claimed: look again next round
            done[action.value] += 1
        self.done.update(done)
        if done:
            log.info("warm_pool_refilled", **done)
        return done
