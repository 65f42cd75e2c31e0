"""Job attempts and leases, with fakes: a job whose holders keep dying ends as its kind's failure
once its attempts are spent (one result per request, riders too), and a holder stops working as
soon as its lease is gone by its own clock, even when it cannot reach PostgreSQL to learn so."""

import asyncio
from typing import Any

from domain.backups import attempts_spent
from domain.errors import TransientError
from domain.jobs import Job
from service.job_runner import JobRunner
from tests.unit.fakes import FakeJobLeases, FakeStores


class FailingWork:
    """A taker/restorer/eraser that must never be called for a spent job."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} called for a job whose attempts are spent")


def _runner(stores: FakeStores, *, lease_s: float = 30.0, max_attempts: int = 3,
            work: Any = None, leases: FakeJobLeases | None = None) -> JobRunner:
    work = work if work is not None else FailingWork()
    return JobRunner(uows=stores, leases=leases or FakeJobLeases(stores), taker=work,
                     restorer=work, eraser=work, lease_s=lease_s, poll_s=1.0,
                     max_attempts=max_attempts, retry_base_s=0.1, retry_max_s=1.0,
                     source="urn:tests")


async def _claimed(stores: FakeStores, kind: str, *, owner: str, claims: int,
                   riders: list[tuple[str, str]] = (), max_attempts: int = 3) -> Job:  # type: ignore[assignment]
    """A job queued (with riders) and claimed ``claims`` times, its earlier holders dead."""
    uow = stores("queue")
    async with uow:
        await uow.jobs.add("job-1", kind, "acme", "cause-1", "corr-1",
                           backup_id="latest" if kind == "restore" else None)
        for cause, corr in riders:
            assert await uow.jobs.add_backup("job-2", "acme", cause, corr) == "job-1"
    leases, job = FakeJobLeases(stores), None
    for _ in range(claims):
        job = await leases.claim(owner, [kind], 30.0, max_attempts)
        assert job is not None
        stores.now += 31  # the holder dies: its lease lapses
    stores.now -= 31
    assert job is not None
    return job


def test_attempts_are_spent_only_once_a_claim_exceeds_the_limit() -> None:
    assert not attempts_spent(1, 5)
    assert not attempts_spent(5, 5)  # the fifth claim is the last real attempt
    assert attempts_spent(6, 5)


async def test_a_spent_backup_fails_once_per_request_without_running() -> None:
    stores = FakeStores()
    runner = _runner(stores, max_attempts=3)
    job = await _claimed(stores, "backup", owner=runner.owner, claims=4,
                         riders=[("rider-1", "corr-r1")])
    assert job.spent

    await runner.run_job(job)
    await runner.run_job(job)  # a second answer is fenced off: the job is not running any more

    assert stores.state.jobs["job-1"]["status"] == "failed"
    assert sorted(e.causationid for e in stores.results) == ["cause-1", "rider-1"]
    assert {e.type for e in stores.results} == {"BackupFailed"}
    assert {e.data["reason"] for e in stores.results} == {"attempts"}
    assert {e.data["attempts"] for e in stores.results} == {3}


async def test_a_spent_restore_or_erase_fails_with_its_own_result() -> None:
    for kind, result in (("restore", "RestoreFailed"), ("erase", "TenantEraseFailed")):
        stores = FakeStores()
        runner = _runner(stores, max_attempts=2)
        job = await _claimed(stores, kind, owner=runner.owner, claims=3, max_attempts=2)
        await runner.run_job(job)
        assert [(e.type, e.data["reason"]) for e in stores.results] == [(result, "attempts")]


async def test_a_holder_that_cannot_renew_stops_when_its_lease_runs_out() -> None:
    stores = FakeStores()
    leases = FakeJobLeases(stores)
    leases.renew_fault = TransientError("renew: connection refused")
    runner = _runner(stores, lease_s=0.3, leases=leases)
    work: asyncio.Task[None] = asyncio.create_task(asyncio.Event().wait())
    job = Job("job-1", "backup", "acme", "cause-1", "corr-1", None, 1)
    heartbeat = asyncio.create_task(runner._heartbeat(job, work, {"bytes": 0}))  # noqa: SLF001
    try:
        done, _ = await asyncio.wait({work}, timeout=10)
        assert done, "the work went on after its lease had run out unrenewed"
        assert work.cancelled()
        assert leases.renewals >= 1
    finally:
        heartbeat.cancel()
        work.cancel()
