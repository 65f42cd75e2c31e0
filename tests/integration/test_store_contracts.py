"""The stores' contract (tests/support/store_contracts.py) on PostgreSQL, through the unit of
work the workers use: the same tests the in-memory fakes pass (tests/unit)."""

import asyncio

import asyncpg
import pytest

from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.outbox import NOTIFY_CHANNEL, PostgresOutbox
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWorks
from domain.tenant_ids import quote_ident
from runtime.settings import Settings
from tests.support.kafka import requested
from tests.support.store_contracts import StoreContracts, Uows, fresh

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def postgres_uows(settings: Settings, service_pool: asyncpg.Pool) -> PostgresUnitOfWorks:
    names = settings.names
    stores = PostgresStores.of(
        names.control_schema, names.tenant_store(), PostgresOutbox(names.control_schema)
    )
    return PostgresUnitOfWorks(service_pool, stores)


class TestPostgresStores(StoreContracts):
    @pytest.fixture
    def uows(self, postgres_uows: PostgresUnitOfWorks) -> Uows:
        return postgres_uows


async def test_locking_many_tenants_holds_each_lock_a_single_lock_would_take(
    postgres_uows: PostgresUnitOfWorks, pg: asyncpg.Connection, settings: Settings
) -> None:
    """``lock_many`` takes the very lock ``lock`` takes (restores send it through psql too),
    for each tenant, until the transaction ends."""
    from adapters.postgres.tenant_store import tenant_lock_sql

    ids = [f"lm_{n}_{settings.namespace[-6:]}" for n in range(3)]
    async with postgres_uows("lock many") as uow:
        await uow.tenants.lock_many(ids)
        for tenant_id in ids:
            # The same key as the single lock's SQL, tried from another session: taken.
            key_sql = tenant_lock_sql(tenant_id).replace("pg_advisory_xact_lock",
                                                         "pg_try_advisory_xact_lock")
            async with pg.transaction():
                assert await pg.fetchval(key_sql.rstrip(";")) is False, tenant_id
    async with pg.transaction():  # released with the transaction
        for tenant_id in ids:
            key_sql = tenant_lock_sql(tenant_id).replace("pg_advisory_xact_lock",
                                                         "pg_try_advisory_xact_lock")
            assert await pg.fetchval(key_sql.rstrip(";")) is True


async def test_staging_results_wakes_the_relay_when_they_commit_and_not_on_rollback(
    settings: Settings, pg: asyncpg.Connection, service_pool: asyncpg.Pool
) -> None:
    """The relay listens on NOTIFY_CHANNEL; staging results notifies it in the same
    transaction. Other sessions notify on the channel too, so only this session's are heard,
    in the order PostgreSQL delivers them (commit order). The rows go to a control schema of
    the test's own, so no relay publishes them."""
    names = settings.names
    control = fresh(f"{names.control_schema}_notify")
    await ensure_control_schema(pg, control, names.app_role, api_reader_role=names.api_reader_role)
    outbox = PostgresOutbox(control)
    listener = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        async with service_pool.acquire() as conn:
            pid = conn.get_server_pid()

            def on_notify(_conn: object, sender: int, _channel: str, payload: str) -> None:
                if sender == pid:
                    heard.put_nowait(payload)

            await listener.add_listener(NOTIFY_CHANNEL, on_notify)
            rolled_back = conn.transaction()
            await rolled_back.start()
            await outbox.add(conn, requested(fresh("nt")))
            await rolled_back.rollback()
            # a marker of our own between the two: whatever came from the rollback precedes it
            await conn.execute("SELECT pg_notify($1, 'marker')", NOTIFY_CHANNEL)
            async with conn.transaction():
                await outbox.add(conn, requested(fresh("nt")))
            first = await asyncio.wait_for(heard.get(), timeout=10)
            second = await asyncio.wait_for(heard.get(), timeout=10)
    finally:
        await listener.close()
        await pg.execute(f"DROP SCHEMA IF EXISTS {quote_ident(control)} CASCADE")
    assert (first, second) == ("marker", "")
