"""The catalogue upkeep on the real PostgreSQL: DDL churn's dead catalogue rows are vacuumed by
the leader (vacuum_count rises for pg_attribute, no shared catalogue is touched), and a role that
is not the database owner is warned about once and vacuums nothing (PostgreSQL would skip).

The jobs here lead on a lock of their own: the session's worker runs the upkeep too, on the
deployment's lock, and may vacuum the same catalogues meanwhile (as may autovacuum)."""

import asyncio
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from structlog.testing import capture_logs

from adapters.postgres.catalog_upkeep import PostgresCatalogUpkeep
from adapters.postgres.pool import create_pool
from domain.catalog_upkeep import CatalogStats
from domain.tenant_ids import quote_ident
from producers.catalog_upkeep import CatalogUpkeep
from runtime.settings import Settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack
TABLES = 300  # of 5 columns: 11 pg_attribute rows each (with the system columns)
DEAD_ROWS = 2_000


def _upkeep_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "catalog_vacuum_dead_rows": DEAD_ROWS,
            "catalog_vacuum_dead_fraction": 0.0,
            "catalog_upkeep_interval_s": 0.5,
            "catalog_upkeep_lock_id": 7_392_000 + secrets.randbelow(10_000),
        }
    )


async def _churn(pg: asyncpg.Connection) -> None:
    """Create and drop TABLES throwaway tables in a scratch schema: dead catalogue rows."""
    schema = quote_ident(f"{secrets.token_hex(4)}_catalog_churn")
    await pg.execute(f"CREATE SCHEMA {schema}")
    try:
        for batch in range(0, TABLES, 100):
            async with pg.transaction():
                for i in range(batch, batch + 100):
                    await pg.execute(
                        f"CREATE TABLE {schema}.t{i} (a int, b text, c bigint, d bool, e date)"
                    )
    finally:
        await pg.execute(f"DROP SCHEMA {schema} CASCADE")
    await pg.execute("SELECT pg_stat_force_next_flush()")  # the drops' dead rows, counted now


async def _vacuum_counts(pg: asyncpg.Connection) -> dict[str, tuple[int, bool]]:
    await pg.execute("SELECT pg_stat_force_next_flush()")
    rows = await pg.fetch(
        "SELECT s.relname, s.vacuum_count, c.relisshared FROM pg_stat_sys_tables s"
        " JOIN pg_class c ON c.oid = s.relid WHERE s.schemaname = 'pg_catalog'"
    )
    return {r["relname"]: (int(r["vacuum_count"]), r["relisshared"]) for r in rows}


class SpyCatalogUpkeep(PostgresCatalogUpkeep):
    """The real adapter, remembering what it was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def may_vacuum(self, conn: asyncpg.Connection) -> bool:
        self.calls.append("may_vacuum")
        return await super().may_vacuum(conn)

    async def stats(self, conn: asyncpg.Connection) -> list[CatalogStats]:
        self.calls.append("stats")
        return await super().stats(conn)

    async def vacuum(self, conn: asyncpg.Connection, catalog: str) -> str | None:
        self.calls.append(f"vacuum {catalog}")
        return await super().vacuum(conn, catalog)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.pg_pool, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def not_owner(pg: asyncpg.Connection) -> AsyncIterator[str]:
    """A throwaway role the service's role is a member of (so it may SET ROLE to it), which
    neither owns the database nor has its owner's privileges."""
    role = f"cu_{secrets.token_hex(4)}"
    await pg.execute(f"CREATE ROLE {quote_ident(role)} NOLOGIN")
    await pg.execute(f"GRANT {quote_ident(role)} TO CURRENT_USER")
    try:
        yield role
    finally:
        await pg.execute(f"DROP ROLE {quote_ident(role)}")


async def test_the_leader_vacuums_the_catalogues_churn_bloated_and_no_shared_one(
    settings: Settings, pg: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    assert await PostgresCatalogUpkeep().may_vacuum(pg), "the stack's role must own the database"
    before = await _vacuum_counts(pg)
    job = CatalogUpkeep(_upkeep_settings(settings), pool, PostgresCatalogUpkeep())

    async def churned_then_vacuumed() -> bool:
        # Churn again if another vacuum (the session worker's, autovacuum) took the dead rows
        # before the job's look: what is checked is that the job vacuums what is due.
        if "pg_attribute" not in job.vacuumed:
            await _churn(pg)
        return "pg_attribute" in job.vacuumed

    task = asyncio.create_task(job.run())  # the real leader loop, on a real advisory lock
    try:
        with capture_logs() as logs:
            await wait_until(churned_then_vacuumed, 120, what="pg_attribute vacuumed", interval=1)
    finally:
        job.stop()
        await asyncio.wait_for(task, 30)
    after = await _vacuum_counts(pg)
    assert after["pg_attribute"][0] > before["pg_attribute"][0]
    shared = {name for name, (_, is_shared) in after.items() if is_shared}
    assert "pg_authid" in shared and "pg_attribute" not in shared
    assert {name for name in shared if after[name][0] != before[name][0]} == set()
    vacuumed = {e["catalog"]: e for e in logs if e["event"] == "catalog_vacuumed"}
    assert vacuumed["pg_attribute"]["dead_rows"] >= DEAD_ROWS
    assert set(vacuumed) == set(job.vacuumed) and not set(vacuumed) & shared


async def test_vacuum_under_a_role_that_is_not_the_owner_is_skipped_by_postgres(
    settings: Settings, pg: asyncpg.Connection, not_owner: str
) -> None:
    """The premise of standing down: VACUUM checks the session's current role (SET ROLE)."""
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        await conn.execute(f"SET ROLE {quote_ident(not_owner)}")
        store = PostgresCatalogUpkeep()
        assert not await store.may_vacuum(conn)
        warning = await store.vacuum(conn, "pg_attribute")
        # PostgreSQL's own word that it did nothing (vacuum_count is no witness here: the
        # session's worker may vacuum meanwhile).
        assert warning is not None and "only superuser or database owner" in warning, warning
    finally:
        await conn.close()


async def test_a_role_that_is_not_the_owner_warns_once_and_stands_down(
    settings: Settings, pg: asyncpg.Connection, not_owner: str
) -> None:
    upkeep_settings = _upkeep_settings(settings)
    cfg = upkeep_settings.pg_pool
    pool = await asyncpg.create_pool(
        cfg.dsn, min_size=1, max_size=2, server_settings={"role": not_owner}
    )
    assert pool is not None
    store = SpyCatalogUpkeep()
    job = CatalogUpkeep(upkeep_settings, pool, store)
    await _churn(pg)  # there is something due
    task = asyncio.create_task(job.run())
    try:
        with capture_logs() as logs:
            await wait_until(lambda: job.permitted is False, 60, what="the permission asked")
            await wait_until(lambda: job.election.is_leader, 10, what="the lock held")
            assert await job.upkeep_once() == []  # a further round asks nothing, warns no more
        assert not task.done(), "standing down must not end the loop (the worker would die)"
    finally:
        job.stop()
        await asyncio.wait_for(task, 30)
        await pool.close()
    warnings = [e for e in logs if e["event"] == "catalog_upkeep_not_permitted"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert store.calls == ["may_vacuum"] and not job.vacuumed
