"""A runner that stops renewing (frozen: SIGSTOP, as a stalled VM or a long GC pause looks) loses
its job: once the lease lapsed another runner takes it over, and the frozen one, when it wakes,
can neither renew, finish nor report. One backup, one catalogue row, one result."""

# Table names are constants of the tests; values are bind parameters.
# ruff: noqa: S608

import asyncio
import hashlib
import os
import signal
import subprocess
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.backup_jobs import PostgresBackupJobs
from contracts.events import BackupDue
from domain.job_ids import backup_id_for
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.lifecycle import fill_incompressible
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack

SLOW = {  # ~2 MB at 64 KiB/s: the backup is still running when its first holder freezes
    "TENANT_BACKUP_RATE_LIMIT_BYTES": str(64 * 1024),
    "TENANT_BACKUP_CHUNK_BYTES": str(64 * 1024),
    "TENANT_BACKUP_LEASE_S": "3",
}


async def _holder(pg: asyncpg.Connection, job_id: str) -> asyncpg.Record | None:
    return await pg.fetchrow(
        f"SELECT lease_owner, attempts, progress_bytes FROM {ns.CONTROL}.backup_jobs"
        " WHERE job_id = $1 AND status = 'running' AND lease_until >= now()", job_id)


async def test_a_lapsed_lease_is_taken_over_and_the_old_holder_is_fenced(
    settings: Settings, log_dir: Path, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds, tmp_path: Path,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await fill_incompressible(pg, tenant_id, 3_000)
    jobs = PostgresBackupJobs(ns.CONTROL)
    env = {**SLOW, "TENANT_BACKUP_LOCAL_DIR": str(tmp_path)}
    try:
        async with bk.backup_workers(settings, log_dir) as pool:
            first = await pool.start("frozen", env)
            due = await bk.send(publisher, bk.envelope(BackupDue(tenant_id=tenant_id)))
            job_id = backup_id_for(due.id)

            async def held_with_progress() -> asyncpg.Record | None:
                row = await _holder(pg, job_id)
                return row if row is not None and row["progress_bytes"] > 0 else None

            held = await wait_until(held_with_progress, 60, what="the first holder running")
            old_owner = held["lease_owner"]
            os.kill(first.pid, signal.SIGSTOP)
            try:
                await pool.start("taker", env)

                async def taken_over() -> asyncpg.Record | None:
                    row = await _holder(pg, job_id)
                    return row if row is not None and row["lease_owner"] != old_owner else None

                taken = await wait_until(taken_over, 60, what="another runner taking the job")
                assert taken["attempts"] == 2, dict(taken)
                # The old holder is fenced: whatever it still tries is refused.
                assert not await jobs.renew(pg, job_id, old_owner, 3, 1)
                async with pg.transaction():
                    assert not await jobs.finish(pg, job_id, old_owner, "succeeded")
                assert (await _holder(pg, job_id) or {}).get("lease_owner") == taken["lease_owner"]
            finally:
                os.kill(first.pid, signal.SIGCONT)
            mark = first.log_size()

            done = await results.first(due.id, 120)

            assert done.type == "BackupCompleted", done.data
            # The woken holder gives up by itself: its lease ran out by its own clock.
            await wait_until(lambda: "job_abandoned_lease" in first.log_text(mark), 60,
                             what="the frozen holder abandoning the job")
            job = await jobs.job(pg, job_id)
            assert job is not None and job["status"] == "succeeded"
            (row,) = await bk.catalog(pg, tenant_id)
            artifact = bk.local_path(row["uri"])
            assert hashlib.sha256(artifact.read_bytes()).hexdigest() == row["sha256"]
            identity = bk.write_identity(tmp_path, bk.unwrap(await bk.wrapped_identity(
                pg, tenant_id) or b""))
            # Whole and authentic to the end (a frozen holder's late writes would break it).
            whole = await asyncio.to_thread(
                subprocess.run, ["bash", "-o", "pipefail", "-c", 'age -d -i "$1" "$2" | zstd -q -t', "check",
                 str(identity), str(artifact)], capture_output=True, text=True, check=False)
            assert whole.returncode == 0, whole.stderr
            assert len(results.caused_by(due.id)) == 1
            assert await pg.fetchval(
                f"SELECT count(*) FROM {ns.CONTROL}.outbox WHERE headers->>'ce_correlationid' = $1",
                due.correlationid) == 1
    finally:
        await bk.forget_backups(pg, [tenant_id])
