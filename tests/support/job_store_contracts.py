"""The contract of the job side's stores (service.ports.Jobs' holder writes, JobLeases, the
BackupKeyring), written once and run on the in-memory fakes (tests/unit) and on PostgreSQL
(tests/integration).

Subclasses provide fixtures on one store: ``uows`` (the unit-of-work factory), ``leases`` (its
JobLeases), ``clock`` (lets the store's clock pass: moved on the fake, waited for on PostgreSQL)
and ``keyring`` (its BackupKeyring). Jobs are committed here, since a claim is its own
transaction: the PostgreSQL subclass gives them a control schema of their own and ends what a
test leaves pending.
"""

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from domain.errors import PermanentError
from domain.jobs import CatalogRow
from service.ports import BackupKeyring, JobLeases
from tests.support.store_contracts import Rollback, Uows, fresh

Clock = Callable[[float], Awaitable[None]]  # ``await clock(s)``: s seconds pass on the store
LONG = 300.0  # a lease no test outlives
MOMENT = 0.01  # a lease renewed to this lapses at once (after ``clock(LAPSE)``)
LAPSE = 0.2


def job_id(kind: str = "b") -> str:
    return f"{kind}-{secrets.token_hex(10)}"


def _row(tenant_id: str, backup_id: str, day: int) -> CatalogRow:
    at = datetime(2026, 1, day, tzinfo=UTC)
    return CatalogRow(
        backup_id, tenant_id, "local", f"file:///{backup_id}", f"{tenant_id}/{backup_id}.a",
        f"{tenant_id}/{backup_id}.m", 1, "0" * 64, 1, at, at, None, None,
    )


async def _queued(uows: Uows, *jobs: tuple[str, str]) -> None:
    """Commit backup jobs, each (job id, tenant id)."""
    async with uows("queue") as uow:
        for job, tenant_id in jobs:
            await uow.jobs.add(job, "backup", tenant_id, fresh("e"), "corr")


async def _lapse(leases: JobLeases, clock: Clock, job: str, owner: str) -> None:
    """End ``owner``'s lease of ``job`` now (its holder died): renewed to a moment, then lapsed."""
    assert await leases.renew(job, owner, MOMENT, 0)
    await clock(LAPSE)


class JobLeasesContract:
    async def test_a_claimed_job_is_not_claimed_again_until_its_lease_lapses(
        self, uows: Uows, leases: JobLeases, clock: Clock
    ) -> None:
        job, tenant_id = job_id(), fresh()
        await _queued(uows, (job, tenant_id))
        first = await leases.claim("runner-a", ["backup"], LONG, 3)
        assert first is not None
        assert (first.job_id, first.tenant_id, first.attempts, first.spent) == (
            job, tenant_id, 1, False
        )
        assert await leases.claim("runner-b", ["backup"], LONG, 3) is None
        await _lapse(leases, clock, job, "runner-a")
        second = await leases.claim("runner-b", ["backup"], LONG, 3)
        assert second is not None and (second.job_id, second.attempts) == (job, 2)
        # The first holder is fenced off everywhere now.
        assert await leases.renew(job, "runner-a", LONG, 0) is False
        async with uows("finish") as uow:
            assert await uow.jobs.finish(job, "runner-a", "succeeded") is False
            assert await uow.jobs.finish(job, "runner-b", "succeeded") is True

    async def test_only_the_holder_renews_and_a_renewed_lease_keeps_the_job(
        self, uows: Uows, leases: JobLeases
    ) -> None:
        job = job_id()
        await _queued(uows, (job, fresh()))
        assert await leases.claim("runner-a", ["backup"], LONG, 3) is not None
        assert await leases.renew(job, "runner-a", LONG, 1024) is True
        assert await leases.renew(job, "runner-b", LONG, 0) is False
        assert await leases.renew(job_id(), "runner-a", LONG, 0) is False  # no such job
        assert await leases.claim("runner-b", ["backup"], LONG, 3) is None

    async def test_a_claim_past_max_attempts_comes_back_spent(
        self, uows: Uows, leases: JobLeases, clock: Clock
    ) -> None:
        job = job_id()
        await _queued(uows, (job, fresh()))
        seen = []
        for owner in ("runner-a", "runner-b", "runner-c"):
            claimed = await leases.claim(owner, ["backup"], LONG, 2)
            assert claimed is not None and claimed.job_id == job
            seen.append((claimed.attempts, claimed.spent))
            await _lapse(leases, clock, job, owner)  # each holder dies without a word
        assert seen == [(1, False), (2, False), (3, True)]

    async def test_one_job_per_tenant_runs_at_a_time_and_kinds_are_respected(
        self, uows: Uows, leases: JobLeases
    ) -> None:
        tenant_id, other = fresh(), fresh()
        first, second, third = job_id(), job_id(), job_id()
        for queued in ((first, tenant_id), (second, tenant_id), (third, other)):
            await _queued(uows, queued)  # one transaction each: an order of arrival
        assert await leases.claim("runner-a", ["erase", "restore"], LONG, 3) is None
        claimed = await leases.claim("runner-a", ["backup"], LONG, 3)
        assert claimed is not None and claimed.job_id == first  # the oldest ready
        nxt = await leases.claim("runner-b", ["backup"], LONG, 3)
        assert nxt is not None and nxt.job_id == third  # tenant_id is busy: its second waits
        assert await leases.claim("runner-c", ["backup"], LONG, 3) is None

    async def test_finish_is_fenced_on_the_holder_and_a_live_lease(
        self, uows: Uows, leases: JobLeases, clock: Clock
    ) -> None:
        done, lapsed = job_id(), job_id()
        await _queued(uows, (done, fresh()), (lapsed, fresh()))
        assert await leases.claim("runner-a", ["backup"], LONG, 3) is not None
        assert await leases.claim("runner-a", ["backup"], LONG, 3) is not None
        async with uows("finish") as uow:
            assert await uow.jobs.finish(done, "runner-b", "succeeded") is False
            assert await uow.jobs.finish(done, "runner-a", "failed", "boom") is True
            assert await uow.jobs.finish(done, "runner-a", "failed", "boom") is False
        await _lapse(leases, clock, lapsed, "runner-a")
        async with uows("finish late") as uow:
            assert await uow.jobs.finish(lapsed, "runner-a", "succeeded") is False
        again = await leases.claim("runner-b", ["backup"], LONG, 3)  # a finished job is done
        assert again is not None and again.job_id == lapsed

    async def test_retry_later_puts_the_job_back_after_its_delay(
        self, uows: Uows, leases: JobLeases
    ) -> None:
        later, now = job_id(), job_id()
        await _queued(uows, (later, fresh()), (now, fresh()))
        for _ in range(2):
            assert await leases.claim("runner-a", ["backup"], LONG, 3) is not None
        async with uows("retry") as uow:
            assert await uow.jobs.retry_later(later, "runner-b", 0, "not ours") is False
            assert await uow.jobs.retry_later(later, "runner-a", LONG, "target down") is True
            assert await uow.jobs.retry_later(now, "runner-a", 0, "target down") is True
        again = await leases.claim("runner-b", ["backup"], LONG, 3)
        assert again is not None and (again.job_id, again.attempts) == (now, 2)
        assert await leases.claim("runner-c", ["backup"], LONG, 3) is None  # ``later`` waits


class JobsRecordsContract:
    """What Jobs records besides leases; in units rolled back, so it needs ``uows`` alone."""

    async def test_riders_are_listed_with_their_job_and_none_elsewhere(self, uows: Uows) -> None:
        tenant_id, host = fresh(), job_id()
        with pytest.raises(Rollback):
            async with uows("riders") as uow:
                assert await uow.jobs.add_backup(host, tenant_id, "cause-0", "corr-0") == host
                for n in (1, 2):  # ids in order of arrival: PostgreSQL breaks ties on them
                    assert await uow.jobs.add_backup(
                        job_id(), tenant_id, f"cause-{n}", f"corr-{n}"
                    ) == host
                riders = await uow.jobs.riders_of(host)
                assert [(r.cause_id, r.correlation_id) for r in riders] == [
                    ("cause-1", "corr-1"), ("cause-2", "corr-2")
                ]
                assert await uow.jobs.riders_of(job_id()) == []
                raise Rollback

    async def test_a_job_without_a_swap_has_none(self, uows: Uows) -> None:
        job = job_id("r")
        with pytest.raises(Rollback):
            async with uows("swap") as uow:
                await uow.jobs.add(job, "restore", fresh(), fresh("e"), "corr", backup_id="b-1")
                assert await uow.jobs.swap_of(job) is None
                assert await uow.jobs.swap_of(job_id("r")) is None
                raise Rollback

    async def test_the_catalogue_lists_newest_first_and_records_drills(self, uows: Uows) -> None:
        tenant_id = fresh()
        older, newer = _row(tenant_id, job_id(), day=1), _row(tenant_id, job_id(), day=2)
        with pytest.raises(Rollback):
            async with uows("catalogue") as uow:
                await uow.jobs.catalogue(older)
                await uow.jobs.catalogue(newer)
                with pytest.raises(PermanentError):
                    async with uow.savepoint():
                        await uow.jobs.catalogue(newer)  # one row per backup id
                assert [r.backup_id for r in await uow.jobs.backups(tenant_id)] == [
                    newer.backup_id, older.backup_id
                ]
                assert await uow.jobs.backup(tenant_id, "latest") == newer
                assert await uow.jobs.has_backup(tenant_id, older.backup_id)
                await uow.jobs.record_drill(older.backup_id, tenant_id, False, '{"ok": false}')
                drilled = await uow.jobs.backup(tenant_id, older.backup_id)
                assert drilled is not None and drilled.last_drill_ok is False
                assert drilled.last_drill_at is not None
                await uow.jobs.forget([older.backup_id])
                assert [r.backup_id for r in await uow.jobs.backups(tenant_id)] == [
                    newer.backup_id
                ]
                raise Rollback

    async def test_a_tenant_with_no_replaced_schema_has_none_to_drop(self, uows: Uows) -> None:
        tenant_id, schema = fresh(), fresh("replaced")
        with pytest.raises(Rollback):
            async with uows("replaced") as uow:
                assert await uow.jobs.replaced_of(tenant_id) == []
                assert schema not in await uow.jobs.expired_replaced()
                await uow.jobs.drop_replaced(schema)  # none: nothing to do, no error
                raise Rollback


class BackupKeyringContract:
    """BackupKeyring (outside a unit) and the unit's BackupKeys on one store: needs ``uows``
    and ``keyring``."""

    async def test_a_key_is_made_once_and_readable_until_destroyed(
        self, uows: Uows, keyring: BackupKeyring
    ) -> None:
        tenant_id = fresh()
        recipient = await keyring.recipient(tenant_id)
        assert recipient.startswith("age1")
        assert await keyring.recipient(tenant_id) == recipient  # made on first use only
        identity = await keyring.identity(tenant_id)
        assert identity is not None and identity.startswith("AGE-SECRET-KEY-")
        async with uows("destroy") as uow:
            assert await uow.keys.destroy(tenant_id) is True
        assert await keyring.identity(tenant_id) is None  # crypto-shredded
        async with uows("destroy again") as uow:
            assert await uow.keys.destroy(tenant_id) is False

    async def test_a_rolled_back_destroy_keeps_the_key(
        self, uows: Uows, keyring: BackupKeyring
    ) -> None:
        tenant_id = fresh()
        await keyring.recipient(tenant_id)
        with pytest.raises(Rollback):
            async with uows("destroy") as uow:
                assert await uow.keys.destroy(tenant_id) is True
                raise Rollback
        assert await keyring.identity(tenant_id) is not None

    async def test_a_tenant_without_a_key_has_no_identity(
        self, uows: Uows, keyring: BackupKeyring
    ) -> None:
        tenant_id = fresh()
        assert await keyring.identity(tenant_id) is None
        async with uows("destroy") as uow:
            assert await uow.keys.destroy(tenant_id) is False
