"""JobRunner on fakes: claim, lease renewal, retry with backoff, the last failure reported once
per request (riders too), and a lost lease that reports nothing."""

import asyncio
from typing import Any

from contracts.events import BackupCompleted
from domain.errors import PermanentError, TransientError
from domain.jobs import Job
from service.job_runner import JobRunner
from tests.unit.fakes import FakeJobLeases, FakeStores, catalogued, tenant
from tests.unit.test_job_attempts import _runner


class Taker:
    """A BackupTaker stand-in: fails with the queued errors first, then completes."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors, self.taken = list(errors), 0

    async def take(self, job: Job, progress: Any) -> tuple[Any, Any]:
        self.taken += 1
        progress(42)
        if self.errors:
            raise self.errors.pop(0)
        row = catalogued(job.tenant_id, job.job_id, day=2)
        return BackupCompleted(tenant_id=job.tenant_id, backup_id=job.job_id, uri=row.uri,
                               bytes=1, sha256="0" * 64), row

    async def expire(self, uow: Any, tenant_id: str, plan: str) -> list[Any]:
        return []

    async def delete_artifacts(self, rows: list[Any]) -> None:
        pass


async def _queued(stores: FakeStores, riders: int = 0) -> None:
    stores.state.tenants["acme"] = tenant("acme")
    async with stores("queue") as uow:
        await uow.jobs.add_backup("b-1", "acme", "cause-1", "corr-1")
        for n in range(riders):
            await uow.jobs.add_backup(f"b-{n + 2}", "acme", f"rider-{n}", f"corr-r{n}")


async def _claim_and_run(stores: FakeStores, runner: JobRunner) -> Job | None:
    job = await FakeJobLeases(stores).claim(runner.owner, ["backup"], 30.0, 3)
    if job is not None:
        await runner.run_job(job)
    return job


async def test_a_claimed_backup_is_catalogued_and_answers_its_request_and_riders_once() -> None:
    stores, taker = FakeStores(), Taker()
    await _queued(stores, riders=2)
    runner = _runner(stores, work=taker)
    assert await _claim_and_run(stores, runner) is not None
    assert stores.state.jobs["b-1"]["status"] == "succeeded"
    assert "b-1" in stores.state.catalogue
    assert sorted(e.causationid for e in stores.results) == ["cause-1", "rider-0", "rider-1"]
    assert {e.type for e in stores.results} == {"BackupCompleted"}
    assert await _claim_and_run(stores, runner) is None  # nothing left to claim


async def test_a_transient_failure_is_retried_later_with_backoff_then_fails_once() -> None:
    stores = FakeStores()
    await _queued(stores, riders=1)
    taker = Taker(*(TransientError(f"target down {n}") for n in range(3)))
    runner = _runner(stores, work=taker, max_attempts=3)
    for attempt in (1, 2):
        await _claim_and_run(stores, runner)
        job = stores.state.jobs["b-1"]
        assert job["status"] == "pending" and job["not_before"] > stores.now  # backed off
        assert 0 < job["not_before"] - stores.now <= 1.0  # retry_max_s
        assert await FakeJobLeases(stores).claim("other", ["backup"], 30.0, 3) is None
        stores.now = job["not_before"]
        assert stores.results == [], f"attempt {attempt} is not the last: no result yet"
    await _claim_and_run(stores, runner)
    assert stores.state.jobs["b-1"]["status"] == "failed"
    assert sorted((e.causationid, e.data["reason"]) for e in stores.results) == [
        ("cause-1", "retries_exhausted"), ("rider-0", "retries_exhausted")]


async def test_a_permanent_failure_is_reported_at_once() -> None:
    stores = FakeStores()
    await _queued(stores)
    await _claim_and_run(stores, _runner(stores, work=Taker(PermanentError("unknown_tenant"))))
    assert [(e.type, e.data["reason"]) for e in stores.results] == [("BackupFailed", "unknown_tenant")]


async def test_a_lost_lease_reports_nothing_and_catalogues_nothing() -> None:
    stores = FakeStores()
    await _queued(stores)
    leases, taker = FakeJobLeases(stores), Taker()
    runner = _runner(stores, work=taker)
    job = await leases.claim(runner.owner, ["backup"], 30.0, 3)
    assert job is not None
    stores.now += 31  # lapsed; another runner takes it
    assert await leases.claim("other", ["backup"], 30.0, 3) is not None
    await runner.run_job(job)
    assert stores.results == [] and stores.state.catalogue == {}
    assert stores.state.jobs["b-1"]["owner"] == "other"


async def test_the_heartbeat_renews_the_lease_while_the_job_runs() -> None:
    stores = FakeStores()
    await _queued(stores)
    renewed = asyncio.Event()

    class Counting(FakeJobLeases):
        async def renew(self, *args: Any) -> bool:
            alive = await super().renew(*args)
            if self.renewals >= 3:  # past the first lease: renewed, not left to lapse
                renewed.set()
            return alive

    leases = Counting(stores)
    runner = _runner(stores, lease_s=0.3, leases=leases)
    job = await leases.claim(runner.owner, ["backup"], 0.3, 3)
    assert job is not None
    work: asyncio.Task[None] = asyncio.create_task(asyncio.Event().wait())
    heartbeat = asyncio.create_task(runner._heartbeat(job, work, {"bytes": 7}))  # noqa: SLF001
    try:
        await asyncio.wait_for(renewed.wait(), 10)
        assert not work.done()
        assert stores.state.jobs["b-1"]["progress_bytes"] == 7
    finally:
        heartbeat.cancel()
        work.cancel()
