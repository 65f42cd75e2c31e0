"""PostgresTenantFigures: the metrics tick's store (service.ports.TenantFigures), a thin binding
of PostgresTenantMetrics (adapters/postgres/tenant_metrics.py, whose SQL it leaves alone) to a
unit of work's connection, with the driver's errors translated.

While bound, it counts every SQL statement the connection runs (asyncpg's own type
introspection excluded): a tick records how many statements it took, which must not depend on
the tenant count.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from adapters.postgres.errors import translated
from adapters.postgres.tenant_metrics import FIGURES, PostgresTenantMetrics
from adapters.postgres.unit_of_work import PostgresUnitOfWork


def _driver_internal(query: str) -> bool:
    """asyncpg's own statements: type introspection on a connection's first use of a type."""
    return (
        "typeinfo_tree" in query
        or "current_setting('jit')" in query
        or ("set_config('jit'" in query)
    )


class BoundTenantFigures:
    def __init__(self, metrics: PostgresTenantMetrics, conn: asyncpg.Connection) -> None:
        self._metrics, self._conn = metrics, conn
        self._statements = 0

    def _count(self, query: asyncpg.connection.LoggedQuery) -> None:
        self._statements += not _driver_internal(query.query)

    def statements(self) -> int:
        return self._statements

    async def collect(self) -> list[Any]:
        with translated("collect tenant metrics"):
            return await self._metrics.collect(self._conn)

    async def record(
        self,
        *,
        window_start: datetime,
        event_id: str,
        collected_at: datetime,
        figures: Sequence[Any],
        redis: Sequence[Sequence[object]],
        statements: int,
        duration_s: float,
        keep_ticks: int,
    ) -> bool:
        with translated("record tenant metrics"):
            return await self._metrics.record(
                self._conn,
                window_start=window_start,
                event_id=event_id,
                collected_at=collected_at,
                figures=figures,
                redis=redis,
                statements=statements,
                duration_s=duration_s,
                keep_ticks=keep_ticks,
            )


class PostgresTenantFigures:
    columns: tuple[str, ...] = FIGURES

    def __init__(self, pool: asyncpg.Pool, metrics: PostgresTenantMetrics) -> None:
        self._pool, self.metrics = pool, metrics

    @asynccontextmanager
    async def within(self, uow: PostgresUnitOfWork) -> AsyncIterator[BoundTenantFigures]:
        conn = uow.connection
        bound = BoundTenantFigures(self.metrics, conn)
        conn.add_query_logger(bound._count)  # noqa: SLF001
        try:
            yield bound
        finally:
            await asyncio.sleep(0)  # the driver calls query loggers with call_soon
            conn.remove_query_logger(bound._count)  # noqa: SLF001

    async def backup_freshness(
        self, rpo_s: float, buckets: Sequence[float]
    ) -> tuple[float, int, int, list[int]]:
        with translated("backup freshness"):
            async with self._pool.acquire() as conn:
                return await self.metrics.backup_freshness(conn, rpo_s, buckets)
