"""The job side's store contract (tests/support/job_store_contracts.py) on the in-memory fakes."""

import pytest

from service.ports import BackupKeyring, JobLeases
from tests.support.job_store_contracts import (
    BackupKeyringContract,
    Clock,
    JobLeasesContract,
    JobsRecordsContract,
)
from tests.support.store_contracts import Uows
from tests.unit.fakes import FakeJobLeases, FakeStores
from tests.unit.fakes.backups import FakeKeyring


class TestFakeJobStores(JobLeasesContract, JobsRecordsContract, BackupKeyringContract):
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

    @pytest.fixture
    def keyring(self, stores: FakeStores) -> BackupKeyring:
        return FakeKeyring(stores=stores)
