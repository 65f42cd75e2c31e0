"""The job side's store contract (tests/support/job_store_contracts.py) on the in-memory fakes."""

import pytest

from service.ports import JobLeases
from tests.support.job_store_contracts import Clock, JobLeasesContract, JobsRecordsContract
from tests.support.store_contracts import Uows
from tests.unit.fakes import FakeJobLeases, FakeStores


class TestFakeJobStores(JobLeasesContract, JobsRecordsContract):
    @pytest.fixture
    def stores(self) -> FakeStores:
        return FakeStores()

    @pytest.fixture
    def uows(self, stores: FakeStores) -> Uows:
        return stores

    @pytest.fixture
    def leases(self, stores: FakeStores) -> JobLeases:
        return FakeJobLeases(stores)

    @pytest.fixture
    def clock(self, stores: FakeStores) -> Clock:
        async def passes(seconds: float) -> None:
            stores.now += seconds

        return passes
