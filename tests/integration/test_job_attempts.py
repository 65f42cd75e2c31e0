"""A backup whose holder is SIGKILLed every time it runs (what an OOM kill does) is not claimed
for ever: once TENANT_BACKUP_MAX_ATTEMPTS claims are spent, the next claim answers it with
BackupFailed{reason "attempts"}, exactly once per request, the request riding on it included."""

# Table names are constants of the tests; values are bind parameters.
# ruff: noqa: S608

import uuid
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.backup_jobs import PostgresBackupJobs
from domain.job_ids import backup_id_for
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.lifecycle import fill_incompressible
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack

MAX_ATTEMPTS = 2
SLOW = {  # ~2 MB at 64 KiB/s: every attempt is still running when its worker is killed
    "TENANT_BACKUP_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "TENANT_BACKUP_RATE_LIMIT_BYTES": str(64 * 1024),
    "TENANT_BACKUP_CHUNK_BYTES": str(64 * 1024),
    "TENANT_BACKUP_LEASE_S": "3",
}


async def _held_by_new_owner(pg: asyncpg.Connection, job_id: str, seen: set[str]) -> str | None:
    row = await pg.fetchrow(
        f"SELECT lease_owner, progress_bytes FROM {ns.CONTROL}.backup_jobs WHERE job_id = $1"
        " AND status = 'running'", job_id)
    if row is None or row["lease_owner"] in seen or row["progress_bytes"] == 0:
        return None
    return str(row["lease_owner"])


async def test_a_backup_whose_holder_keeps_dying_fails_once_its_attempts_are_spent(
    settings: Settings, log_dir: Path, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds, tmp_path: Path,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await fill_incompressible(pg, tenant_id, 3_000)
    jobs = PostgresBackupJobs(ns.CONTROL)
    # Two requests accepted before any runner looks: the second rides on the first's job.
    causes = [str(uuid.uuid4()), str(uuid.uuid4())]
    job_id = backup_id_for(causes[0])
    async with pg.transaction():
        hosts = [await jobs.add_backup(pg, backup_id_for(c), tenant_id, c, f"corr-{c}")
                 for c in causes]
    assert hosts == [job_id, job_id]
    env = {**SLOW, "TENANT_BACKUP_LOCAL_DIR": str(tmp_path)}
    try:
        async with bk.backup_workers(settings, log_dir) as pool:
            owners: set[str] = set()
            for i in range(MAX_ATTEMPTS):
                worker = await pool.start(f"doomed-{i}", env)
                owner = await wait_until(lambda: _held_by_new_owner(pg, job_id, owners), 60,
                                         what=f"attempt {i + 1} running", interval=0.1)
                owners.add(owner)
                await worker.kill()
            await pool.start("survivor", env)
            done = await results.all_of(causes, 90)

            for cause in causes:
                assert (done[cause].type, done[cause].data.get("reason")) == ("BackupFailed",
                                                                          "attempts")
                assert done[cause].data["attempts"] == MAX_ATTEMPTS
            job = await jobs.job(pg, job_id)
            assert job is not None and job["status"] == "failed"
            assert await bk.catalog(pg, tenant_id) == []
            # Exactly once: one result per request was ever written, and one arrived.
            assert [await _results_written(pg, f"corr-{c}") for c in causes] == [1, 1]
            assert [len(results.caused_by(c)) for c in causes] == [1, 1]
    finally:
        await bk.forget_backups(pg, [tenant_id])


async def _results_written(pg: asyncpg.Connection, correlation_id: str) -> int:
    return int(await pg.fetchval(
        f"SELECT count(*) FROM {ns.CONTROL}.outbox WHERE headers->>'ce_correlationid' = $1",
        correlation_id))
