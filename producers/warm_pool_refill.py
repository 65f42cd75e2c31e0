"""Keeps the warm pool at ``warm_pool_size`` schemas of the latest template, from one leader.

Runs under the shared leader loop with its own lock (``Names.warm_pool_lock_id``), in every
``provisioner`` worker when the pool is on: whichever holds the lock refills. One action per
short transaction (make one pooled schema, or drop one made from an older template or beyond
the size), each decided afresh from the pool as it is (domain.warm_pool.next_refill), since
provisioners claim from it meanwhile; a stop request is honoured between rounds. Schemas are
made up to ``warm_pool_refill_connections`` at a time (one while provisioners claim), each on its
own connection and in its own transaction (domain.warm_pool.creations_at_once), then the pool is
looked at again. A full pool is looked at again every ``warm_pool_refill_interval_s``.
"""

import asyncio
from collections import Counter
from typing import Protocol

import asyncpg
import structlog

from domain.warm_pool import RefillAction, creations_at_once, next_refill
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
        self._connections = settings.warm_pool_refill_connections
        self.done: Counter[str] = Counter()  # actions since start
        self._last_total: int | None = None  # pooled schemas at the last look, plus those made
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
                # Fewer than at the last look plus what the refill made since: provisioners
                # claimed meanwhile (it drops only what next_refill never answers with a yield).
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
                if action != RefillAction.CREATE:
                    async with conn.transaction():
                        stale = action == RefillAction.DISCARD_STALE
                        if await self._store.discard(conn, stale=stale) is None:
                            break  # the rows to drop are being claimed: look again next round
                    done[action.value] += 1
                    continue
            n = creations_at_once(
                counts,
                latest=self._store.latest,
                size=self._size,
                connections=self._connections,
                claiming=claiming,
            )
            # Each creation commits or rolls back alone. All finish before the first error is
            # raised as it is (not wrapped, so the leader loop can tell a transient one); the
            # loop then steps down and tries again.
            results = await asyncio.gather(
                *(self._create() for _ in range(n)), return_exceptions=True
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            done[RefillAction.CREATE.value] += n - len(failed)
            if failed:
                self.done.update(done)
                raise failed[0]
            self._last_total = total + n  # so a claim during these creations is seen as one
        self.done.update(done)
        if done:
            log.info("warm_pool_refilled", **done)
        return done

    async def _create(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await self._store.add(conn)
