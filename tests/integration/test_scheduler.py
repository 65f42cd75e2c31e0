"""Three scheduler processes: exactly one BackupDue effect per tenant per window, and a standby
takes over when the leader is SIGKILLed, with no window lost or doubled across the takeover.
How fast it takes over is a duration, not a promise a test can hold on a loaded machine."""

# Table names are constants of the tests; values are bind parameters.
# ruff: noqa: S608

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from contracts import topics
from domain.schedules import Every, next_window, tick_id, windows_between
from runtime.settings import Settings
from tests.scheduling_fixtures import create_tenants, drop_tenants, new_prefix, series
from tests.support import names as ns
from tests.support.kafka import TopicTail
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack
WINDOW_S = 4
POLL_S = 0.5
WINDOWS = 3
TENANTS = 3
# How long to wait for a takeover: a limit on waiting, never an assertion on speed.
TAKEOVER_WAIT_S = 60.0


@pytest.fixture(scope="module")
async def scheduled(pg: asyncpg.Connection) -> AsyncIterator[tuple[str, list[str]]]:
    prefix = new_prefix()
    plan, tenant_ids = f"{prefix}plan", [f"{prefix}{i}" for i in range(TENANTS)]
    await create_tenants(pg, tenant_ids, plan)
    yield plan, tenant_ids
    await drop_tenants(pg, tenant_ids)


@pytest.fixture
async def processes(
    scheduled: tuple[str, list[str]], log_dir: Path,
    tmp_path: Path, settings: Settings,
) -> AsyncIterator[tuple[list[WorkerProcess], WorkerProcess]]:
    plan, _ = scheduled
    scheduler_env = {
        "TENANT_BACKUP_SCHEDULES": json.dumps({plan: f"@every {WINDOW_S}s"}),
        "TENANT_BACKUP_DEFAULT_SCHEDULE": "0 0 30 2 *",  # never: leave other tenants alone
        "TENANT_SCHEDULER_LOCK_ID": str(secrets.randbelow(1 << 30) + 1_000_000),
        "TENANT_SCHEDULER_POLL_S": str(POLL_S),
        # Every window missed during a slow takeover is still emitted, so "no window skipped"
        # below is an outcome of the takeover, whatever its duration.
        "TENANT_SCHEDULER_CATCH_UP": "all",
        "TENANT_METRICS_INTERVAL": "3600",
    }
    schedulers = [
        WorkerProcess(["scheduler"], log_dir / f"scheduler-{i}.log", scheduler_env)
        for i in range(3)
    ]
    backup = WorkerProcess(["backup"], log_dir / "scheduler-backup.log", {
        "TENANT_BACKUP_TARGET": "local",
        "TENANT_BACKUP_LOCAL_DIR": str(tmp_path / "backups"),
    })
    await asyncio.gather(*(w.start() for w in [*schedulers, backup]))
    yield schedulers, backup
    for worker in [*schedulers, backup]:
        if worker.running:
            await worker.terminate(settings.shutdown_grace_s + 10)


async def test_one_backup_per_tenant_per_window_and_standby_takeover(
    processes: tuple[list[WorkerProcess], WorkerProcess],
    scheduled: tuple[str, list[str]],
    settings: Settings,
    pg: asyncpg.Connection,
) -> None:
    schedulers, _ = processes
    _, tenant_ids = scheduled
    started = datetime.now(UTC)
    # Every tick id a window of ours could have, for the whole test.
    candidates = windows_between(
        Every(WINDOW_S), started - timedelta(minutes=2), started + timedelta(minutes=3)
    )
    ticks = {
        tick_id("BackupDue", t, w): (t, w) for t in tenant_ids for w in candidates
    }

    async def effects() -> list[tuple[str, str]]:
        """(tenant, tick id) of every accepted BackupDue: a job of its own, or a ride on the
        tenant's job still waiting (one backup answers both; see add_backup)."""
        rows = await pg.fetch(
            f"SELECT tenant_id, cause_id FROM {ns.CONTROL}.backup_jobs WHERE tenant_id = ANY($1)"
            f" UNION ALL SELECT j.tenant_id, r.cause_id FROM {ns.CONTROL}.backup_job_riders r"
            f" JOIN {ns.CONTROL}.backup_jobs j USING (job_id) WHERE j.tenant_id = ANY($1)",
            tenant_ids,
        )
        return [(r["tenant_id"], r["cause_id"]) for r in rows]

    async def windows_done(after: datetime, n: int) -> bool:
        """Every tenant has effects for at least ``n`` windows later than ``after``."""
        found = await effects()
        return all(
            len({ticks[c][1] for t, c in found if t == tenant and ticks[c][1] > after}) >= n
            for tenant in tenant_ids
        )

    async with TopicTail(settings, topics.BACKUPS) as tail:
        await wait_until(
            lambda: windows_done(started, WINDOWS),
            WINDOW_S * (WINDOWS + 3) + 10, what=f"{WINDOWS} windows of backups", interval=0.2,
        )
        leaders = [await series(w.port, "tenant_scheduler_leader") for w in schedulers]
        assert sorted(leaders) == [0.0, 0.0, 1.0], f"leaders: {leaders}"
        # Steady state: the one leader published each tick exactly once.
        ids = (json.loads(r.value)["id"] for r in tail.records if r.value)
        published = Counter(i for i in ids if i in ticks)
        assert published and set(published.values()) == {1}, published

        leader = schedulers[leaders.index(1.0)]
        standbys = [w for w in schedulers if w is not leader]
        await leader.kill()
        killed_wall = datetime.now(UTC)

        async def new_leader() -> bool:
            return any([await series(w.port, "tenant_scheduler_leader") == 1.0 for w in standbys])

        await wait_until(new_leader, TAKEOVER_WAIT_S, what="a standby to lead", interval=0.1)
        # ... and it emits the next window for every tenant.
        after_kill = next_window(Every(WINDOW_S), killed_wall)
        assert after_kill is not None
        await wait_until(
            lambda: windows_done(after_kill - timedelta(seconds=1), 1),
            WINDOW_S + TAKEOVER_WAIT_S, what="the first window after the kill",
            interval=0.2,
        )

    found = await effects()
    assert all(cause in ticks for _, cause in found), "a BackupDue that is not one of our ticks"
    assert len(found) == len(set(found)), "a tick had two effects"
    for tenant in tenant_ids:
        windows = sorted(ticks[c][1] for t, c in found if t == tenant)
        gaps = {b - a for a, b in zip(windows, windows[1:], strict=False)}
        # one effect per window and no window skipped, across the leader's death
        assert gaps == {timedelta(seconds=WINDOW_S)}, f"{tenant}: {windows}"
        for cause in (c for t, c in found if t == tenant):
            inbox = await pg.fetchval(
                f"SELECT count(*) FROM {ns.CONTROL}.inbox WHERE consumer_group = $1"
                " AND event_id = $2", topics.BACKUP_GROUP, cause,
            )
            assert inbox == 1

