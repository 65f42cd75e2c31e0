"""The stores' contract (tests/support/store_contracts.py) on PostgreSQL, through the unit of
work the workers use: the same tests the in-memory fakes pass (tests/unit)."""

import asyncpg
import pytest

from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWorks
from runtime.settings import Settings
from tests.support.store_contracts import StoreContracts, Uows

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
