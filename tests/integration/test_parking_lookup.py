"""The parking lot's batch lookup contract (tests/support/parking_contracts.py) on PostgreSQL:
the same tests the fake passes (tests/unit/test_parking_lookup.py). Each test uses groups of
its own, so the session's parking lot needs no cleaning between them."""

from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.parked_events import PostgresParkedEvents
from adapters.postgres.pool import create_pool
from runtime.settings import Settings
from tests.support.parking_contracts import ParkingLookupContract
from tests.support.stack import TenantIds

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def postgres_parking(
    settings: Settings, pg: asyncpg.Connection, tenants: TenantIds
) -> AsyncIterator[PostgresParkedEvents]:
    names = settings.names
    # The session's namespace: created here if no worker has run yet, dropped with ``tenants``.
    await ensure_control_schema(
        pg, names.control_schema, names.app_role, api_reader_role=names.api_reader_role
    )
    pool = await create_pool(settings.pg_pool, max_size=2)
    yield PostgresParkedEvents(pool, names.control_schema)
    await pool.close()


class TestPostgresParkedEvents(ParkingLookupContract):
    @pytest.fixture
    def parking(self, postgres_parking: PostgresParkedEvents) -> PostgresParkedEvents:
        return postgres_parking
