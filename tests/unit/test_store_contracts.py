"""The stores' contract (tests/support/store_contracts.py) on the in-memory fakes."""

import pytest

from tests.support.store_contracts import StoreContracts, Uows
from tests.unit.fakes import FakeStores


class TestFakeStores(StoreContracts):
    @pytest.fixture
    def uows(self) -> Uows:
        return FakeStores()
