"""The parking lot's batch lookup contract (tests/support/parking_contracts.py) on the fake
the delivery tests use; tests/integration/test_parking_lookup.py runs it on PostgreSQL."""

import pytest

from tests.support.parking_contracts import ParkingLookupContract
from tests.unit.delivery_fakes import Clock, FakeParkedEvents


class TestFakeParkedEvents(ParkingLookupContract):
    @pytest.fixture
    def parking(self) -> FakeParkedEvents:
        return FakeParkedEvents(Clock())
