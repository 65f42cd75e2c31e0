"""Claims backup and restore jobs with a lease, runs them, and reports through the outbox.

The runner renews its lease while a job runs; finishing writes (catalog row, job status,
outbox result) are one transaction fenced on the lease owner. Transient failures are retried
with exponential backoff and jitter up to a limit; the last failure becomes a *Failed result.
A job whose runners keep dying (no failure is ever reported) is bounded by the same limit on
claims: the claim past it answers the job's requests with reason "attempts". A runner that
cannot renew stops the work once its lease has run out by its own clock.

A job runs in a span ``job <kind>`` continuing its request's trace (stored with the job when it
was accepted), so its result carries that trace id; a request riding on the job gets its result
written under a span of its own trace.
"""

import asyncio
import contextlib
import dataclasses
import random
import socket
import uuid

import structlog

from adapters.trace_context import continued_span, writer_attributes
from contracts.codec import envelope_for
from contracts.envelope import Envelope, now
from contracts.events import BackupFailed, RestoreFailed, Result, TenantEraseFailed
from domain.backups import retry_delay
from domain.errors import LEASE_LOST, PermanentError, TenantServiceError, TransientError
from domain.jobs import CatalogRow, Job
from service.backups import BackupTaker
from service.erasure import Eraser
from service.ports import JobLeases
from service.restores import Restorer
from service.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)


class JobRunner:
    def __init__(
        self,
        *,
        uows: UnitOfWorkFactory,
        leases: JobLeases,
        taker: BackupTaker,
        restorer: Restorer | None,
        eraser: Eraser,
        lease_s: float,
        poll_s: float,
        max_attempts: int,
        retry_base_s: float,
        retry_max_s: float,
        source: str,
    ) -> None:
        self._uows, self._leases = uows, leases
        self._taker, self._restorer, self._eraser = taker, restorer, eraser
        self._lease, self._poll = lease_s, poll_s
        # The watchdog's margin before the lease would lapse: room to kill and reap the job's
        # subprocesses before another runner may claim it.
        self._margin = lease_s / 4
        self._attempts, self._retry = max_attempts, (retry_base_s, retry_max_s)
        self._source = source
        self.owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._stopping = asyncio.Event()
        # Only workers given the master identity can restore; the others never claim restores.
        self._kinds = ["backup", "erase", "restore"] if restorer else ["backup", "erase"]

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            job = None
            try:
                job = await self._leases.claim(self.owner, self._kinds, self._lease, self._attempts)
                if job is not None:
                    await self.run_job(job)
                    continue
                await self._housekeeping()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # e.g. PostgreSQL restarting: the lease lapses, we go on
                log.warning("job_runner_interrupted", error=repr(e), job_id=job and job.job_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll)

    async def run_job(self, job: Job) -> None:
        """Run (or, spent, fail) one claimed job, in a span continuing its request's trace."""
        attributes: dict[str, str | int | bool] = {
            "job.id": job.job_id, "job.kind": job.kind, "tenant.id": job.tenant_id,
            "job.attempt": job.attempts,
        }
        with continued_span(f"job {job.kind}", job.traceparent, job.tracestate, attributes):
            await self._run_job(job)

    async def _run_job(self, job: Job) -> None:
        structlog.contextvars.bind_contextvars(
            job_id=job.job_id,
            tenant_id=job.tenant_id,
            event_id=job.cause_id,
            correlation_id=job.correlation_id,
        )
        if job.spent:
            # Its earlier holders died mid-job (each claim counted); running it again would
            # most likely kill this runner too. Report the attempts it had, not the claims.
            spent = dataclasses.replace(job, attempts=self._attempts)
            try:
                await self._fail(spent, "attempts", f"claimed {job.attempts} times, never finished")
            finally:
                structlog.contextvars.unbind_contextvars("job_id")
            return
        progress = {"bytes": 0}
        work = asyncio.create_task(self._work(job, lambda n: progress.__setitem__("bytes", n)))
        heartbeat = asyncio.create_task(self._heartbeat(job, work, progress))
        try:
            result, row = await work
            await self._succeed(job, result, row)
        except asyncio.CancelledError:
            if not self._stopping.is_set():  # lease lost: another runner owns the job now
                log.warning("job_abandoned_lease_lost")
            else:
                raise
        except (TransientError, OSError) as e:
            # A dropped connection mid-job (translated by the adapters) is as transient as a
            # network error on the target.
            await self._transient(job, f"{type(e).__name__}: {e}")
        except PermanentError as e:
            if e.reason == LEASE_LOST:  # the fenced swap refused: the job is not ours any more
                log.warning("job_abandoned_lease_lost")
            else:
                await self._fail(job, e.reason, str(e))
        except Exception as e:  # a bug must not leave the job running forever
            log.exception("job_crashed")
            await self._fail(job, "internal_error", repr(e))
        finally:
            heartbeat.cancel()
            structlog.contextvars.unbind_contextvars("job_id")

    async def _work(self, job: Job, progress: object) -> tuple[Result, object]:
        log.info("job_started", kind=job.kind, attempt=job.attempts)
        if job.kind == "backup":
            return await self._taker.take(job, progress)  # type: ignore[arg-type]
        if job.kind == "erase":
            return await self._eraser.erase(job, job.archive, progress), None
        assert self._restorer is not None
        return await self._restorer.restore(job, self.owner), None

    async def _heartbeat(
        self, job: Job, work: asyncio.Task[object], progress: dict[str, int]
    ) -> None:
        """Renew the lease; stop the work (and so its subprocesses) before the lease can lapse.

        The lease is known to last until ``lease_s`` after the last renewal was *sent*; the work
        is cancelled a margin before that, whether the renewal was refused, failed or hangs, so
        no one else can take the job while this runner's pg_dump/psql still run.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lease - self._margin  # claimed just before we started
        while True:
            await asyncio.sleep(max(0.0, min(self._lease / 3, deadline - loop.time())))
            if loop.time() >= deadline:
                log.warning("lease_watchdog_stops_job")
                await self._stop_work(work)
                return
            sent = loop.time()
            try:
                async with asyncio.timeout(deadline - sent):
                    alive = await self._leases.renew(
                        job.job_id, self.owner, self._lease, progress["bytes"]
                    )
            except (OSError, TimeoutError, TenantServiceError) as e:
                log.warning("lease_renewal_failed", error=repr(e))
                continue  # the watchdog stops the job if no renewal succeeds in time
            if not alive:
                await self._stop_work(work)
                return
            deadline = sent + self._lease - self._margin

    @staticmethod
    async def _stop_work(work: asyncio.Task[object]) -> None:
        """Cancel and wait: the work's cleanup kills and reaps its subprocesses."""
        work.cancel()
        with contextlib.suppress(BaseException):
            await work

    async def _succeed(self, job: Job, result: Result, row: object) -> None:
        expired: list[CatalogRow] = []
        async with self._uows(f"finish job {job.job_id}") as uow:
            if not await uow.jobs.finish(job.job_id, self.owner, "succeeded"):
                log.warning("job_result_dropped_lease_lost")
                raise asyncio.CancelledError  # rolls back; the artifact is uncatalogued
            if isinstance(row, CatalogRow):
                await uow.jobs.catalogue(row)
                record = await uow.tenants.get(job.tenant_id)
                if record is not None:
                    expired = await self._taker.expire(uow, job.tenant_id, record.plan)
            await self._answer(uow, job, result)
        log.info("job_succeeded", result=type(result).__name__, expired=len(expired))
        await self._taker.delete_artifacts(expired)

    async def _transient(self, job: Job, error: str) -> None:
        if job.attempts >= self._attempts:
            await self._fail(job, "retries_exhausted", error)
            return
        delay = retry_delay(job.attempts, *self._retry, jitter=random.random())
        log.warning(
            "job_retry_scheduled", error=error, attempt=job.attempts, delay_s=round(delay, 2)
        )
        async with self._uows(f"retry job {job.job_id}") as uow:
            await uow.jobs.retry_later(job.job_id, self.owner, delay, error[:1000])

    async def _fail(self, job: Job, reason: str, detail: str) -> None:
        failed: Result
        if job.kind == "backup":
            failed = BackupFailed(tenant_id=job.tenant_id, reason=reason, attempts=job.attempts)
        elif job.kind == "erase":
            failed = TenantEraseFailed(tenant_id=job.tenant_id, reason=reason, detail=detail[:1000])
        else:
            failed = RestoreFailed(
                tenant_id=job.tenant_id, backup_id=job.backup_id or "latest", reason=reason
            )
        async with self._uows(f"fail job {job.job_id}") as uow:
            if await uow.jobs.finish(job.job_id, self.owner, "failed", detail[:1000]):
                await self._answer(uow, job, failed)
        log.warning("job_failed", reason=reason, detail=detail[:300])

    async def _answer(self, uow: UnitOfWork, job: Job, result: Result) -> None:
        """One result per request: the job's own cause and every request riding on it, each
        written under a span of its request's trace (and stamped with it)."""
        def envelope(cause_id: str, correlation_id: str) -> Envelope:
            cause = _cause(job.tenant_id, job.kind, cause_id, correlation_id)
            return envelope_for(result, cause=cause, source=self._source,
                                extensions=writer_attributes())

        await uow.outbox.add_many([envelope(job.cause_id, job.correlation_id)])
        if job.kind != "backup":
            return
        riders = await uow.jobs.riders_of(job.job_id)
        if riders:
            log.info("job_answers_riders", riders=len(riders))
        for rider in riders:
            with continued_span(f"answer {job.kind}", rider.traceparent, rider.tracestate,
                                {"job.id": job.job_id, "messaging.message.id": rider.cause_id}):
                await uow.outbox.add_many([envelope(rider.cause_id, rider.correlation_id)])

    async def _housekeeping(self) -> None:
        if self._restorer is None:
            return
        try:
            for schema in await self._restorer.drop_expired_replaced():
                log.info("replaced_schema_dropped", schema=schema)
        except Exception as e:
            log.warning("housekeeping_failed", error=repr(e))


def _cause(tenant_id: str, kind: str, cause_id: str, correlation_id: str) -> Envelope:
    """Stands in for the causing event: a result's envelope takes only its id and correlation."""
    return Envelope(
        specversion="1.0",
        id=cause_id,
        source="urn:tenant-service",
        type=kind,
        time=now(),
        subject=tenant_id,
        correlationid=correlation_id,
        data={},
    )
