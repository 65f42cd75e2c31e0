"""A backup longer than Kafka's max.poll.interval: no rebalance storm, never two jobs of one
tenant at once, both requested backups done, no member kicked out. Needs the only
members of tenant-backup to be this test's own two workers."""

import re
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from contracts.events import BackupDue
from domain.job_ids import backup_id_for
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog, group_members
from tests.support.lifecycle import fill_incompressible, running_job, watch_concurrency
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack

POLL_INTERVAL_MS = 10_000
RATE = 128 * 1024  # bytes/s of the encrypted stream
CHURN = re.compile(r"rebalanc|heartbeat failed|revoking previously|joined group|left group"
                   r"|commitfailed|illegalgeneration|unknownmemberid|assigned to partitions", re.IGNORECASE)


async def test_backup_longer_than_the_poll_interval(
    settings: Settings, log_dir: Path, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds, tmp_path: Path,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await fill_incompressible(pg, tenant_id, 3_000)  # ~2 MB: ~16 s at RATE
    env = {
        "TENANT_BACKUP_LOCAL_DIR": str(tmp_path),
        "TENANT_KAFKA_MAX_POLL_INTERVAL_MS": str(POLL_INTERVAL_MS),
        "TENANT_BACKUP_RATE_LIMIT_BYTES": str(RATE),
        "TENANT_BACKUP_CHUNK_BYTES": str(64 * 1024),
        "TENANT_BACKUP_LEASE_S": "4",
    }
    try:
        async with bk.backup_workers(settings, log_dir) as pool:
            first = await pool.start("long-1", env)
            second = await pool.start("long-2", env)

            async def settled() -> tuple[str, list[int]] | None:
                state, members = await group_members(settings, topics.BACKUP_GROUP)
                return (state, members) if state == "Stable" and all(members) else None

            state, members = await wait_until(settled, 30, what="stable group", interval=0.5)
            assert len(members) == 2, f"group tenant-backup has {len(members)} members, not our 2"
            marks = {w: w.log_size() for w in (first, second)}

            async with watch_concurrency(settings.pg_dsn.get_secret_value(), tenant_id) as running:
                one = await bk.send(publisher, bk.envelope(BackupDue(tenant_id=tenant_id)))
                await running_job(pg, backup_id_for(one.id))
                running_since = await pg.fetchval("SELECT clock_timestamp()")
                # The premise, as an order of events: a whole max.poll.interval passes while
                # the first backup is still running. A slow machine only makes this truer.
                await wait_until(
                    lambda: _outlived_poll_interval(pg, backup_id_for(one.id), running_since), 120,
                    what="a poll interval to pass, or the backup to end first", interval=0.5,
                )
                two = await bk.send(publisher, bk.envelope(BackupDue(tenant_id=tenant_id)))
                done = await results.all_of([one.id, two.id], 120)

            assert [done[e.id].type for e in (one, two)] == ["BackupCompleted"] * 2
            for e in (one, two):
                bk.assert_ours(done[e.id].data["uri"], tmp_path.as_uri())
            rows = await bk.catalog(pg, tenant_id)
            assert [r["backup_id"] for r in rows] == [backup_id_for(one.id), backup_id_for(two.id)]
            # Never two of the tenant's jobs under live leases at once; the second waited.
            assert max(running) == 1, running
            assert rows[1]["started_at"] >= rows[0]["finished_at"]
            # No member left, no rebalance after both had joined.
            state, members = await group_members(settings, topics.BACKUP_GROUP)
            assert (state, len(members)) == ("Stable", 2)
            assert first.running and second.running
            churn = {w.log_path.name: CHURN.findall(w.log_text(marks[w])) for w in marks}
            assert all(not found for found in churn.values()), churn
    finally:
        await bk.forget_backups(pg, [tenant_id])


async def _outlived_poll_interval(
    pg: asyncpg.Connection, job_id: str, running_since: datetime
) -> bool:
    """True once the job has been running a poll interval; fails if it ended before that (the
    test would then prove nothing about a backup longer than the interval)."""
    row = await pg.fetchrow(
        "SELECT status, clock_timestamp() - $2::timestamptz > make_interval(secs => $3) AS outlived"
        f" FROM {ns.CONTROL}.backup_jobs WHERE job_id = $1",
        job_id, running_since, POLL_INTERVAL_MS / 1000,
    )
    assert row is not None and row["status"] == "running", (
        f"the backup ended before max.poll.interval ({POLL_INTERVAL_MS} ms) passed: {row}")
    return bool(row["outlived"])
