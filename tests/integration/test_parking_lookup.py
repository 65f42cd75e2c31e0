"""The parking lot's batch lookup contract (tests/support/parking_contracts.py) on PostgreSQL:
the same tests the fake passes (tests/unit/test_parking_lookup.py). Each test uses groups of
its own, so the session's parking lot needs no cleaning between them."""

import asyncpg
import pytest

from adapters.postgres.parked_events import PostgresParkedEvents
from runtime.settings import Settings
from tests.support.parking_contracts import ParkingLookupContract

pytestmark = pytest.mark.stack


class TestPostgresParkedEvents(ParkingLookupContract):
    @pytest.fixture
    def parking(self, service_pool: asyncpg.Pool, settings: Settings) -> PostgresParkedEvents:
        return PostgresParkedEvents(service_pool, settings.names.control_schema)
