"""The stores' contract (tests/support/store_contracts.py) on PostgreSQL, through the unit of
work the workers use: the same tests the in-memory fakes pass (tests/unit)."""

from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.pool import create_pool
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWorks
from runtime.settings import Settings
from tests.support.stack import TenantIds
from tests.support.store_contracts import StoreContracts, Uows

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def postgres_uows(
    settings: Settings, pg: asyncpg.Connection, tenants: TenantIds
) -> AsyncIterator[PostgresUnitOfWorks]:
    names = settings.names
    # The session's namespace: created here if no worker has run yet, dropped with ``tenants``.
    await ensure_control_schema(
        pg, names.control_schema, names.app_role, api_reader_role=names.api_reader_role
    )
    pool = await create_pool(settings.pg_pool, max_size=2)
    stores = PostgresStores.of(
        names.control_schema, names.tenant_store(), PostgresOutbox(names.control_schema)
    )
    yield PostgresUnitOfWorks(pool, stores)
    await pool.close()


class TestPostgresStores(StoreContracts):
    @pytest.fixture
    def uows(self, postgres_uows: PostgresUnitOfWorks) -> Uows:
        return postgres_uows
