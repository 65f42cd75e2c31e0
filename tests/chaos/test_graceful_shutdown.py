"""SIGTERM during a long backup (PRIVATE stack): the worker stops taking records, hands the job
back within TENANT_SHUTDOWN_GRACE_S (partial aborted, nothing catalogued or reported), exits 0;
a fresh worker then completes the job exactly once (one catalog row, one result)."""

# ruff: noqa: S608

from __future__ import annotations

import secrets

import asyncpg
import pytest

from contracts import codec
from contracts.events import BackupDue, TenantRequested
from domain.job_ids import backup_id_for
from tests.chaos.observe import EventsTail, InputPublisher
from tests.chaos.private_stack import PrivateStack
from tests.support import names as ns
from tests.support.backups import add_users
from tests.support.waiting import wait_until

pytestmark = pytest.mark.chaos

GRACE_S = 4.0
SLOW = {"TENANT_BACKUP_RATE_LIMIT_BYTES": str(48 * 1024), "TENANT_BACKUP_CHUNK_BYTES": "65536",
        "TENANT_SHUTDOWN_GRACE_S": str(GRACE_S), "TENANT_BACKUP_LEASE_S": "6"}


async def test_sigterm_hands_back_a_long_backup(stack_workers: PrivateStack,
                                                private_pg: asyncpg.Connection) -> None:
    s, pg = stack_workers, private_pg
    await s.worker(["provisioner", "relay"], "graceful-lifecycle")
    settings = s.settings()
    t = f"gs_{secrets.token_hex(4)}"
    async with InputPublisher(settings) as pub, EventsTail(settings) as tail:
        req = await pub.send(codec.envelope_for(TenantRequested(tenant_id=t, plan="free")))
        await tail.wait_for({req.envelope.id}, 60, "provisioning")
        # ~1 MiB of incompressible rows: at 48 KiB/s the backup takes ~20 s
        await add_users(pg, t, [secrets.token_hex(256) for _ in range(2500)])

        slow = await s.worker(["backup"], "graceful-slow", SLOW)
        due = (await pub.send(codec.envelope_for(BackupDue(tenant_id=t)))).envelope
        job_id = backup_id_for(due.id)

        async def in_flight() -> bool:
            row = await pg.fetchrow(
                f"SELECT status, progress_bytes FROM {ns.CONTROL}.backup_jobs WHERE job_id = $1",
                job_id)
            return row is not None and row["status"] == "running" and row["progress_bytes"] > 0

        await wait_until(in_flight, 60, what="the backup to be streaming", interval=0.2)
        size = slow.log_size()
        code = await slow.terminate(GRACE_S + 60)  # a limit on waiting, not an assertion
        assert code == 0, slow.log_tail()
        after = slow.log_text(size)
        assert '"event": "worker_stopping"' in after and '"event": "worker_stopped"' in after
        # nothing durable was claimed for the unfinished job
        assert await pg.fetchval(f"SELECT count(*) FROM {ns.CONTROL}.backups"
                                 " WHERE backup_id = $1", job_id) == 0
        assert await pg.fetchval(f"SELECT count(*) FROM {ns.CONTROL}.outbox"
                                 " WHERE event_id IN ($1, $2)",
                                 codec.result_event_id(due.id, "BackupCompleted"),
                                 codec.result_event_id(due.id, "BackupFailed")) == 0
        job = await pg.fetchrow(f"SELECT * FROM {ns.CONTROL}.backup_jobs WHERE job_id = $1",
                                job_id)
        assert job["status"] in ("running", "pending"), dict(job)
        tenant_dir = s.backup_dir / t
        leftovers = [p.name for p in tenant_dir.iterdir()] if tenant_dir.exists() else []
        assert not leftovers, f"partial or artifact left behind: {leftovers}"
        assert due.id not in tail.by_cause

        # a restarted worker completes it, exactly once
        await s.worker(["backup"], "graceful-fresh")
        await tail.wait_for({due.id}, 90, "the handed-back backup")
        answers = {(e.envelope.type, e.envelope.id) for e in tail.by_cause[due.id]}
        assert len(answers) == 1 and next(iter(answers))[0] == "BackupCompleted", answers
        assert await pg.fetchval(f"SELECT count(*) FROM {ns.CONTROL}.backups"
                                 " WHERE tenant_id = $1", t) == 1
        assert await pg.fetchval(f"SELECT count(*) FROM {ns.CONTROL}.inbox WHERE event_id = $1",
                                 due.id) == 1
        assert await pg.fetchval(f"SELECT attempts FROM {ns.CONTROL}.backup_jobs"
                                 " WHERE job_id = $1", job_id) >= 2
