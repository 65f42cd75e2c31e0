"""Restore safety policies with fakes: verify before execute, the lease watchdog, a swap that is
never repeated, fenced swap SQL, forward migrations under the migration timeouts."""

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.dump_pipeline import verified_spool
from adapters.postgres.restore_swap import restore_role_name, swap_in_sql, swap_out_sql
from domain.errors import PermanentError, TransientError
from domain.jobs import Job
from domain.migrations import Migration
from service.job_runner import JobRunner
from service.restores import Restorer
from tests.unit.fakes import FakeJobLeases, FakeStores, catalogued, tenant
from tests.unit.fakes.backups import FakeKeyring, FakeRestoreDatabase

JOB = Job("r-1", "restore", "t_acme", "c-1", "c-1", "b-1", 1)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


# ---- verify before execute ----------------------------------------------------------------------


async def test_a_spool_is_yielded_only_when_its_sha256_matches_and_is_private(tmp_path: Path) -> None:
    data = [b"age-encrypted ", b"bytes"]
    sha = hashlib.sha256(b"".join(data)).hexdigest()
    async with verified_spool(_chunks(*data), sha, tmp_path) as spool:
        assert spool.read_bytes() == b"".join(data)
        assert stat.S_IMODE(spool.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == []


async def test_a_mismatching_artifact_is_refused_and_its_spool_removed(tmp_path: Path) -> None:
    with pytest.raises(PermanentError) as failure:
        async with verified_spool(_chunks(b"replaced"), "0" * 64, tmp_path):
            pytest.fail("a mismatching artifact must never be yielded")
    assert failure.value.reason == "checksum_mismatch"
    assert os.listdir(tmp_path) == []


async def test_a_spool_is_removed_when_the_restore_fails(tmp_path: Path) -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(RuntimeError):
        async with verified_spool(_chunks(b"x"), sha, tmp_path):
            raise RuntimeError("psql died")
    assert os.listdir(tmp_path) == []


# ---- the fenced swap -----------------------------------------------------------------------------


def test_swap_sql_quotes_every_value_and_names_the_fenced_functions() -> None:
    out = swap_out_sql("tenant_service", "r-1", "host:o'wner", "replaced_0123456789abcdef")
    assert out == (
        "SELECT \"tenant_service\".restore_swap_out('r-1', 'host:o''wner',"
        " 'replaced_0123456789abcdef');"
    )
    into = swap_in_sql("tenant_service", "r-1", "me", "replaced_0123456789abcdef", "b'1", 1, 60.0)
    assert "'b''1', 1, 60.0::double precision" in into


def test_the_restore_role_name_fits_postgres_limit() -> None:
    assert restore_role_name("tenant_service") == "tenant_service_restore"
    assert len(restore_role_name("x" * 63).encode()) <= 63


def _restorer(stores: FakeStores, database: FakeRestoreDatabase | None = None) -> Restorer:
    return Restorer(
        dsn="postgresql://svc:pw@db/tenants", uows=stores, keyring=FakeKeyring(),
        database=database or FakeRestoreDatabase(), target=None,  # type: ignore[arg-type]
        migrations=[Migration(1, "m1", "-- 1"), Migration(2, "m2", "-- 2")],
        grace_s=60, chunk_bytes=1 << 16, control_schema="tenant_service",
        migration_lock_timeout_ms=1234, migration_statement_timeout_ms=56789,
    )


def _swapped(version: int = 1) -> FakeStores:
    """A tenant at ``version`` whose restore job r-1 has its swap recorded (a retry's state)."""
    stores = FakeStores()
    stores.state.tenants["t_acme"] = tenant("t_acme", version=version)
    stores.state.jobs["r-1"] = {"job_id": "r-1", "kind": "restore", "tenant_id": "t_acme",
                                "swapped": ("b-1", "replaced_0123456789abcdef")}
    return stores


async def test_a_retry_after_a_recorded_swap_resumes_without_restoring_again() -> None:
    stores = _swapped(version=2)
    restorer = _restorer(stores)

    async def must_not_run(*args: object, **kw: object) -> None:
        pytest.fail("the swap already committed: it must not run again")

    restorer._run = must_not_run  # type: ignore[method-assign]
    result = await restorer.restore(JOB, "me")
    assert result.backup_id == "b-1" and result.schema_version == 2


async def test_the_forward_migration_runs_under_the_migration_timeouts() -> None:
    stores = _swapped(version=1)
    result = await _restorer(stores).restore(JOB, "me")
    (migrating,) = [u for u in stores.units if u.time_limits is not None]
    assert migrating.time_limits == (1234, 56789)
    assert stores.locked == ["t_acme"]  # the tenant's lock is awaited under them
    assert result.schema_version == 2 and stores.state.tenants["t_acme"].schema_version == 2


async def test_a_restore_of_a_tenant_whose_key_is_destroyed_fails_before_any_byte() -> None:
    stores = _swapped()
    stores.state.jobs["r-1"]["swapped"] = None
    stores.state.catalogue["b-1"] = catalogued("t_acme", "b-1")
    restorer = _restorer(stores)
    restorer._keyring = FakeKeyring(destroyed=["t_acme"])  # noqa: SLF001
    with pytest.raises(PermanentError) as failure:
        await restorer.restore(JOB, "me")
    assert failure.value.reason == "key_destroyed"


async def test_expired_replaced_schemas_are_dropped_and_forgotten() -> None:
    stores = FakeStores()
    stores.state.replaced.update({"replaced_old": "t_acme", "replaced_new": "t_acme"})
    stores.expired_schemas.add("replaced_old")
    assert await _restorer(stores).drop_expired_replaced() == ["replaced_old"]
    assert stores.state.replaced == {"replaced_new": "t_acme"}


# ---- the lease watchdog --------------------------------------------------------------------------


class _LeaseJobs(FakeJobLeases):
    def __init__(self, renew: Any) -> None:
        super().__init__(FakeStores())
        self._renew = renew

    async def renew(self, *args: object) -> bool:
        return bool(await self._renew())


def _runner(jobs: _LeaseJobs, lease_s: float) -> JobRunner:
    return JobRunner(
        uows=FakeStores(), leases=jobs, taker=None,  # type: ignore[arg-type]
        restorer=None, eraser=None, lease_s=lease_s, poll_s=1, max_attempts=3,  # type: ignore[arg-type]
        retry_base_s=1, retry_max_s=1, source="test",
    )


async def _watched(runner: JobRunner) -> bool:
    """Runs a 'job' whose cleanup marks its subprocesses killed; True once the watchdog stopped it."""
    killed = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            killed.set()  # where a real job kills and reaps pg_dump/psql

    task = asyncio.create_task(work())
    heartbeat = asyncio.create_task(runner._heartbeat(JOB, task, {"bytes": 0}))
    try:
        await asyncio.wait_for(killed.wait(), 10)
        return task.cancelled() or task.done()
    finally:
        heartbeat.cancel()
        task.cancel()


async def test_the_watchdog_stops_the_job_when_renewals_keep_failing() -> None:
    async def fails() -> bool:
        raise TransientError("renew: connection refused")

    assert await _watched(_runner(_LeaseJobs(fails), lease_s=0.4))


async def test_the_watchdog_stops_the_job_when_a_renewal_hangs() -> None:
    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    assert await _watched(_runner(_LeaseJobs(hangs), lease_s=0.4))


async def test_the_job_is_stopped_when_the_lease_was_taken() -> None:
    async def refused() -> bool:
        return False

    assert await _watched(_runner(_LeaseJobs(refused), lease_s=0.4))


async def test_a_job_whose_renewals_succeed_keeps_running() -> None:
    renewed = asyncio.Event()
    count = 0

    async def ok() -> bool:
        nonlocal count
        count += 1
        if count >= 4:  # past the first lease: it was renewed, not left to lapse
            renewed.set()
        return True

    runner = _runner(_LeaseJobs(ok), lease_s=0.3)
    task = asyncio.create_task(asyncio.Event().wait())
    heartbeat = asyncio.create_task(runner._heartbeat(JOB, task, {"bytes": 0}))
    try:
        await asyncio.wait_for(renewed.wait(), 10)
        assert not task.done()
    finally:
        heartbeat.cancel()
        task.cancel()


def test_spool_files_are_created_private_even_with_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        async def spool() -> int:
            sha = hashlib.sha256(b"x").hexdigest()
            async with verified_spool(_chunks(b"x"), sha, tmp_path) as path:
                return stat.S_IMODE(path.stat().st_mode)

        assert asyncio.run(spool()) == 0o600
    finally:
        os.umask(old)
