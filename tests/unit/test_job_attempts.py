"""Job attempts and leases, with fakes: a job whose holders keep dying ends as its kind's failure
once its attempts are spent (one result per request, riders too), and a holder stops working as
soon as its lease is gone by its own clock, even when it cannot reach PostgreSQL to learn so."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from adapters.postgres.backup_jobs import Job
from domain.backups import attempts_spent
from service.job_runner import JobRunner


class FakeConnection:
    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


class FakePool:
    def __init__(self, *, down: bool = False) -> None:
        self.down = down

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConnection]:
        if self.down:
            raise OSError("connection refused")
        yield FakeConnection()


class FakeBackupJobs:
    def __init__(self, riders: list[tuple[str, str]]) -> None:
        self.riders = riders
        self.finished: list[tuple[str, str, str | None]] = []

    async def finish(self, conn: Any, job_id: str, owner: str, status: str,
                     error: str | None = None) -> bool:
        self.finished.append((job_id, status, error))
        return True

    async def riders_of(self, conn: Any, job_id: str) -> list[tuple[str, str]]:
        return self.riders

    async def renew(self, *args: Any) -> bool:
        return True


class FakeOutbox:
    def __init__(self) -> None:
        self.added: list[Any] = []

    async def add_many(self, conn: Any, envelopes: list[Any]) -> None:
        self.added += envelopes


class FailingWork:
    """A taker/restorer/eraser that must never be called for a spent job."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} called for a job whose attempts are spent")


def _runner(pool: FakePool, jobs: FakeBackupJobs, outbox: FakeOutbox, *, lease_s: float = 30.0,
            max_attempts: int = 3) -> JobRunner:
    work: Any = FailingWork()
    return JobRunner(pool=pool, jobs=jobs, outbox=outbox, store=work, taker=work,  # type: ignore[arg-type]
                     restorer=work, eraser=work, lease_s=lease_s, poll_s=1.0,
                     max_attempts=max_attempts, retry_base_s=0.1, retry_max_s=1.0,
                     source="urn:tests")


def _job(kind: str, attempts: int, *, spent: bool = True) -> Job:
    """A job as claim() returns it past the limit (``spent``: see attempts_spent)."""
    return Job("job-1", kind, "acme", "cause-1", "corr-1", "latest" if kind == "restore" else None,
               attempts, spent=spent)


def test_attempts_are_spent_only_once_a_claim_exceeds_the_limit() -> None:
    assert not attempts_spent(1, 5)
    assert not attempts_spent(5, 5)  # the fifth claim is the last real attempt
    assert attempts_spent(6, 5)


async def test_a_spent_backup_fails_once_per_request_without_running() -> None:
    jobs, outbox = FakeBackupJobs([("rider-1", "corr-r1")]), FakeOutbox()
    runner = _runner(FakePool(), jobs, outbox, max_attempts=3)

    await runner.run_job(_job("backup", 4))

    assert [status for _, status, _ in jobs.finished] == ["failed"]
    assert sorted(e.causationid for e in outbox.added) == ["cause-1", "rider-1"]
    assert {e.type for e in outbox.added} == {"BackupFailed"}
    assert {e.data["reason"] for e in outbox.added} == {"attempts"}
    assert {e.data["attempts"] for e in outbox.added} == {3}


async def test_a_spent_restore_or_erase_fails_with_its_own_result() -> None:
    for kind, result in (("restore", "RestoreFailed"), ("erase", "TenantEraseFailed")):
        jobs, outbox = FakeBackupJobs([]), FakeOutbox()
        await _runner(FakePool(), jobs, outbox, max_attempts=2).run_job(_job(kind, 3))
        assert [(e.type, e.data["reason"]) for e in outbox.added] == [(result, "attempts")]


async def test_a_holder_that_cannot_renew_stops_when_its_lease_runs_out() -> None:
    runner = _runner(FakePool(down=True), FakeBackupJobs([]), FakeOutbox(), lease_s=0.3)
    work: asyncio.Task[None] = asyncio.create_task(asyncio.Event().wait())
    heartbeat = asyncio.create_task(
        runner._heartbeat(_job("backup", 1, spent=False), work, {"bytes": 0})  # noqa: SLF001
    )
    try:
        done, _ = await asyncio.wait({work}, timeout=10)
        assert done, "the work went on after its lease had run out unrenewed"
        assert work.cancelled()
    finally:
        heartbeat.cancel()
        work.cancel()
