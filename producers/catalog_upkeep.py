"""Vacuums the system catalogues that tenant DDL churn bloats, from one leader.

Runs under the shared leader loop with its own lock (``Names.catalog_upkeep_lock_id``), in every
``provisioner`` worker when ``catalog_upkeep_interval_s`` is not 0: whichever holds the lock
looks at the database's pg_catalog statistics every interval and vacuums what
domain.catalog_upkeep says is due, one catalogue at a time, worst first; a stop request is
honoured between catalogues. Each VACUUM runs on a pooled connection outside any transaction.

Only the database owner (or a member of its role) may vacuum the catalogues. That is asked once,
on becoming leader: a role without it logs one ``catalog_upkeep_not_permitted`` warning and stands
down, keeping the lock idle until the process stops (a restart asks again), so neither it nor a
standby retries every round.
"""

import time
from collections import Counter
from typing import Protocol

import asyncpg
import structlog

from domain.catalog_upkeep import CatalogStats, UpkeepPolicy, catalogs_to_vacuum
from producers.leader import PeriodicLeaderJob
from runtime import metrics
from runtime.settings import Settings

log = structlog.get_logger(__name__)


class CatalogStore(Protocol):
    """The catalogues' statistics and their VACUUM; ``conn`` is not in a transaction."""

    async def may_vacuum(self, conn: asyncpg.Connection) -> bool: ...
    async def stats(self, conn: asyncpg.Connection) -> list[CatalogStats]: ...
    async def vacuum(self, conn: asyncpg.Connection, catalog: str) -> str | None: ...


class CatalogUpkeep(PeriodicLeaderJob):
    """Vacuums the due catalogues every ``catalog_upkeep_interval_s`` while holding its lock."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, store: CatalogStore) -> None:
        self._pool, self._store = pool, store
        self._policy = UpkeepPolicy(
            dead_rows=settings.catalog_vacuum_dead_rows,
            dead_fraction=settings.catalog_vacuum_dead_fraction,
        )
        self.vacuumed: Counter[str] = Counter()  # VACUUMs since start, per catalogue
        self.permitted: bool | None = None  # None until asked, on first leading
        super().__init__(
            settings,
            "catalog-upkeep",
            settings.names.catalog_upkeep_lock_id,
            settings.catalog_upkeep_interval_s,
            self.upkeep_once,
        )

    async def upkeep_once(self) -> list[str]:
        """One look at the statistics; vacuums each due catalogue and returns those it did.
        Nothing (after one warning) if the role may not vacuum them."""
        done: list[str] = []
        async with self._pool.acquire() as conn:
            if self.permitted is None:
                self.permitted = await self._store.may_vacuum(conn)
                if not self.permitted:
                    log.warning(
                        "catalog_upkeep_not_permitted",
                        reason="the service's role is not the database owner (nor a member of "
                        "its role): PostgreSQL would skip every catalogue",
                        action="standing down until restart; make the role own the database, "
                        "or set TENANT_CATALOG_UPKEEP_INTERVAL_S=0",
                    )
                    self.stand_down()  # keep the lock idle: a standby would only warn again
            if not self.permitted:
                return done
            for catalog in catalogs_to_vacuum(await self._store.stats(conn), self._policy):
                if self.stopping:
                    break
                started = time.perf_counter()
                skipped = await self._store.vacuum(conn, catalog.name)
                seconds = round(time.perf_counter() - started, 3)
                if skipped is not None:
                    log.warning("catalog_vacuum_skipped", catalog=catalog.name, reason=skipped)
                    continue
                done.append(catalog.name)
                self.vacuumed[catalog.name] += 1
                metrics.CATALOG_VACUUMS.labels(catalog=catalog.name).inc()
                log.info(
                    "catalog_vacuumed",
                    catalog=catalog.name,
                    dead_rows=catalog.dead,
                    live_rows=catalog.live,
                    seconds=seconds,
                )
        return done
