"""The shell of the periodic leader jobs (retention, warm pool refill, catalogue upkeep) on a fake
lock: a round on leading and every interval after, none without the lock, stand-down keeps the
lock idle, stop ends it; and each job builds it on its own lock and role. No stack."""

import asyncio
from typing import Any, cast

import pytest

from producers.catalog_upkeep import CatalogUpkeep
from producers.leader import PeriodicLeaderJob
from producers.retention import Retention
from producers.warm_pool_refill import WarmPoolRefill
from runtime.settings import Settings
from tests.support.waiting import wait_until

DSN = "postgresql://u:p@127.0.0.1:1/db"


class FakeLeaderLock:
    def __init__(self, *, available: bool = True) -> None:
        self.available, self.held, self.releases, self.attempts = available, False, 0, 0

    async def acquire(self) -> bool:
        self.attempts += 1
        self.held = self.available
        return self.held

    async def holds(self) -> bool:
        return self.held

    async def release(self) -> None:
        self.held = False
        self.releases += 1


class Rounds:
    """The job's ``once``: counts rounds, and asks the job to stand down on round ``stand_at``."""

    def __init__(self, stand_at: int = 0) -> None:
        self.count, self.stand_at = 0, stand_at
        self.job: PeriodicLeaderJob | None = None

    async def __call__(self) -> None:
        self.count += 1
        if self.count == self.stand_at and self.job is not None:
            self.job.stand_down()


def job_with(rounds: Rounds, lock: FakeLeaderLock, interval_s: float = 0.01) -> PeriodicLeaderJob:
    settings = Settings(pg_dsn=DSN)  # type: ignore[arg-type]
    job = PeriodicLeaderJob(settings, "test-job", 4343, interval_s, rounds)
    job.election.lock = lock  # type: ignore[assignment]
    rounds.job = job
    return job


async def test_the_leader_does_a_round_every_interval_until_stopped() -> None:
    rounds, lock = Rounds(), FakeLeaderLock()
    job = job_with(rounds, lock)
    task = asyncio.create_task(job.run())
    await wait_until(lambda: rounds.count >= 3, 5, what="three rounds")
    assert job.election.is_leader and not job.stopping
    job.stop()
    await asyncio.wait_for(task, 5)
    assert job.stopping and not lock.held and not job.election.is_leader


async def test_no_round_runs_without_the_lock() -> None:
    rounds, lock = Rounds(), FakeLeaderLock(available=False)
    job = job_with(rounds, lock)
    task = asyncio.create_task(job.run())
    await wait_until(lambda: lock.attempts >= 3, 5, what="three tries at the lock")
    job.stop()
    await asyncio.wait_for(task, 5)
    assert rounds.count == 0 and not job.election.is_leader


async def test_a_job_that_stands_down_keeps_the_lock_idle_until_stopped() -> None:
    rounds, lock = Rounds(stand_at=2), FakeLeaderLock()
    job = job_with(rounds, lock)
    # A job beside it on the same interval: its rounds are the intervals that pass meanwhile.
    beside = Rounds()
    clock = job_with(beside, FakeLeaderLock())
    tasks = [asyncio.create_task(j.run()) for j in (job, clock)]
    try:
        await wait_until(lambda: rounds.count == 2, 5, what="the round that stands down")
        start = beside.count
        await wait_until(lambda: beside.count >= start + 5, 5, what="five intervals more")
        assert rounds.count == 2, "a job that stood down did another round"
        assert lock.held and job.election.is_leader and not tasks[0].done()
    finally:
        job.stop()
        clock.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert not lock.held and lock.releases >= 1


async def test_pause_ends_at_stop() -> None:
    job = job_with(Rounds(), FakeLeaderLock(), interval_s=3600)
    pausing = asyncio.create_task(job.pause(3600))
    await asyncio.sleep(0)
    assert not pausing.done()
    job.stop()
    await asyncio.wait_for(pausing, 5)


@pytest.mark.parametrize(
    ("build", "role", "lock", "interval"),
    [
        (Retention, "retention", "retention_lock_id", "retention_interval_s"),
        (WarmPoolRefill, "warm-pool", "warm_pool_lock_id", "warm_pool_refill_interval_s"),
        (CatalogUpkeep, "catalog-upkeep", "catalog_upkeep_lock_id", "catalog_upkeep_interval_s"),
    ],
)
def test_each_job_leads_on_its_own_lock_and_interval(
    build: Any, role: str, lock: str, interval: str
) -> None:
    settings = Settings(pg_dsn=DSN, leader_session_timeout_s=20, **{interval: 30})  # type: ignore[arg-type]
    job = cast(PeriodicLeaderJob, build(settings, cast(Any, None), cast(Any, None)))
    election = job.election
    assert election._name == role and election.lock._app == f"tenant-service-{role}"
    assert election.lock.lock_id == getattr(settings.names, lock)
    assert job._interval_s == 30
    # A standby polls well inside the session timeout: every 10 s here, not every 30 s.
    assert election._poll_s == 10
