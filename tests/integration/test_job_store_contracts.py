"""The job side's store contract (tests/support/job_store_contracts.py) on PostgreSQL: the same
tests the in-memory fakes pass (tests/unit), through the adapters the job runner uses.

Claims commit and pick any ready job of the control schema, so these tests get a control schema
of their own (no other test's job is claimed, none of theirs left for another), and every job a
test leaves pending or running is ended after it.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from adapters.age_keys import PostgresTenantKeys
from adapters.postgres.backup_snapshots import PostgresBackupKeyring
from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.job_leases import PostgresJobLeases
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.pool import create_pool
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWorks
from domain.tenant_ids import quote_ident
from runtime.settings import Settings
from service.ports import BackupKeyring, JobLeases
from tests.support.job_store_contracts import (
    BackupKeyringContract,
    Clock,
    JobLeasesContract,
    JobsRecordsContract,
)
from tests.support.stack import TenantIds
from tests.support.store_contracts import Uows, fresh
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack


@dataclass(frozen=True)
class JobStores:
    pool: asyncpg.Pool
    stores: PostgresStores
    control: str  # the control schema of this module's jobs


@pytest.fixture(scope="module")
async def job_stores(
    settings: Settings, pg: asyncpg.Connection, tenants: TenantIds
) -> AsyncIterator[JobStores]:
    names = settings.names
    control = fresh(f"{names.control_schema}_jobs")
    await ensure_control_schema(pg, control, names.app_role, api_reader_role=names.api_reader_role)
    pool = await create_pool(settings.pg_pool, max_size=2)
    try:
        stores = PostgresStores.of(control, names.tenant_store(), PostgresOutbox(control))
        yield JobStores(pool, stores, control)
    finally:
        await pool.close()
        await pg.execute(f"DROP SCHEMA {quote_ident(control)} CASCADE")


class TestPostgresJobStores(JobLeasesContract, JobsRecordsContract, BackupKeyringContract):
    @pytest.fixture
    async def uows(
        self, job_stores: JobStores
    ) -> AsyncIterator[Uows]:
        pool, stores = job_stores.pool, job_stores.stores
        yield PostgresUnitOfWorks(pool, stores)
        await pool.execute(  # what the test left claimable is no other test's to find
            f"UPDATE {stores.jobs.jobs} SET status = 'failed', lease_owner = NULL,"
            " lease_until = NULL WHERE status IN ('pending', 'running')"
        )

    @pytest.fixture
    def leases(self, job_stores: JobStores) -> JobLeases:
        pool, stores = job_stores.pool, job_stores.stores
        return PostgresJobLeases(pool, stores.jobs)

    @pytest.fixture
    def clock(self, job_stores: JobStores) -> Clock:
        pool = job_stores.pool

        async def passes(seconds: float) -> None:
            start = await pool.fetchval("SELECT clock_timestamp()")

            async def passed() -> bool:
                return bool(await pool.fetchval(
                    "SELECT clock_timestamp() >= $1::timestamptz + make_interval(secs => $2)",
                    start, seconds,
                ))

            await wait_until(passed, 30, what=f"{seconds}s on the database's clock")

        return passes

    @pytest.fixture
    async def keyring(
        self, settings: Settings, job_stores: JobStores
    ) -> BackupKeyring:
        pool = job_stores.pool
        master = settings.backup_master_recipient
        assert master and settings.backup_master_identity_file, "no master key: scripts/stack up"
        keys = PostgresTenantKeys(job_stores.control, master)
        async with pool.acquire() as conn:
            assert await keys.pin_master(conn) is None  # this schema's master is ours
        return PostgresBackupKeyring(pool, keys, settings.backup_master_identity_file)
