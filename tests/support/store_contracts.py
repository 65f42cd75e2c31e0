"""The contract of every store behind service.ports, written once.

Subclasses provide a ``uows`` fixture (a factory ``uows(what)`` of units of work on a fresh or
shared store) and are collected twice: on the in-memory fakes (tests/unit) and on PostgreSQL
(tests/integration). Ids are fresh per test, so a shared database needs no cleaning between.
"""

import secrets
from collections.abc import Callable

import pytest

from contracts.codec import envelope_for
from contracts.events import TenantDeactivated
from domain.errors import PermanentError
from domain.lifecycle import TenantStatus
from domain.migrations import Migration
from service.unit_of_work import UnitOfWork

Uows = Callable[[str], UnitOfWork]
STEPS = [
    Migration(1, "notes", "CREATE TABLE notes (id bigserial PRIMARY KEY, body text)"),
    Migration(2, "tags", "CREATE TABLE tags (id bigserial PRIMARY KEY, tag text)"),
]


class Rollback(Exception):
    """Raised by a test to end a unit of work by rolling it back."""


def fresh(prefix: str = "c") -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


class TenantRegistryContract:
    async def test_an_unknown_tenant_is_none(self, uows: Uows) -> None:
        async with uows("read") as uow:
            assert await uow.tenants.get(fresh()) is None

    async def test_a_created_tenant_is_active_at_the_last_step_and_counted(
        self, uows: Uows
    ) -> None:
        tenant_id = fresh()
        with pytest.raises(Rollback):  # the DDL rolls back with the unit: nothing to clean
            async with uows("create") as uow:
                before = await uow.tenants.count_live()
                await uow.tenants.lock(tenant_id)
                record = await uow.tenants.create(tenant_id, "basic", STEPS)
                assert (record.tenant_id, record.plan) == (tenant_id, "basic")
                assert (record.status, record.schema_version) == (TenantStatus.ACTIVE, 2)
                assert await uow.tenants.get(tenant_id) == record
                assert await uow.tenants.count_live() == before + 1
                raise Rollback
        async with uows("read") as uow:
            assert await uow.tenants.get(tenant_id) is None

    async def test_creating_an_existing_tenant_is_permanent_and_a_savepoint_keeps_the_unit(
        self, uows: Uows
    ) -> None:
        tenant_id = fresh()
        with pytest.raises(Rollback):
            async with uows("create twice") as uow:
                first = await uow.tenants.create(tenant_id, "basic", STEPS)
                with pytest.raises(PermanentError):
                    async with uow.savepoint():
                        await uow.tenants.create(tenant_id, "basic", STEPS)
                assert await uow.tenants.get(tenant_id) == first  # the unit goes on
                raise Rollback

    async def test_many_are_read_as_one_by_one_and_the_unknown_left_out(
        self, uows: Uows
    ) -> None:
        known, unknown = fresh(), fresh()
        with pytest.raises(Rollback):
            async with uows("read many") as uow:
                await uow.tenants.lock_many([unknown, known, known])
                record = await uow.tenants.create(known, "basic", STEPS)
                assert await uow.tenants.get_many([known, unknown]) == {known: record}
                assert await uow.tenants.get_many([]) == {}
                raise Rollback

    async def test_status_changes_and_migrations_are_recorded(self, uows: Uows) -> None:
        tenant_id = fresh()
        with pytest.raises(Rollback):
            async with uows("change") as uow:
                await uow.tenants.create(tenant_id, "basic", STEPS[:1])
                assert await uow.tenants.migrate(tenant_id, STEPS[1:]) == 2
                await uow.tenants.set_status(tenant_id, TenantStatus.SUSPENDED)
                assert await uow.tenants.revoke_access(tenant_id) >= 0
                await uow.tenants.grant_access(tenant_id)
                record = await uow.tenants.get(tenant_id)
                assert record is not None
                assert (record.status, record.schema_version) == (TenantStatus.SUSPENDED, 2)
                await uow.tenants.mark_erasing(tenant_id, "a-1")
                record = await uow.tenants.get(tenant_id)
                assert record is not None
                assert (record.status, record.erase_archive_id) == (TenantStatus.ERASING, "a-1")
                raise Rollback


class InboxContract:
    async def test_an_event_is_claimed_once_per_group(self, uows: Uows) -> None:
        group, envelope = fresh("g"), envelope_for(TenantDeactivated(tenant_id="acme"))
        async with uows("claim") as uow:
            assert await uow.inbox.claim(group, envelope) is True
            assert await uow.inbox.claim(group, envelope) is False
            assert await uow.inbox.claim(fresh("g"), envelope) is True  # another group
        async with uows("claim again") as uow:
            assert await uow.inbox.claim(group, envelope) is False

    async def test_a_rolled_back_claim_is_forgotten(self, uows: Uows) -> None:
        group, envelope = fresh("g"), envelope_for(TenantDeactivated(tenant_id="acme"))
        with pytest.raises(Rollback):
            async with uows("claim") as uow:
                assert await uow.inbox.claim(group, envelope) is True
                raise Rollback
        async with uows("claim again") as uow:
            assert await uow.inbox.claim(group, envelope) is True

    async def test_a_batch_claims_the_new_ids_once_and_a_release_gives_them_back(
        self, uows: Uows
    ) -> None:
        group = fresh("g")
        seen, new, also_new = (envelope_for(TenantDeactivated(tenant_id=t))
                               for t in ("acme", "bolt", "cask"))
        async with uows("claim one") as uow:
            assert await uow.inbox.claim(group, seen) is True
        async with uows("claim a batch") as uow:
            # Processed before, new, new twice in the batch: each new id once.
            claimed = await uow.inbox.claim_many(group, [seen, new, also_new, new])
            assert claimed == {new.id, also_new.id}
            assert await uow.inbox.claim_many(group, [seen, new]) == set()
            assert await uow.inbox.claim_many(group, []) == set()
            await uow.inbox.release(group, [also_new.id])
        async with uows("claim again") as uow:
            assert await uow.inbox.claim_many(group, [new, also_new]) == {also_new.id}


class OutboxContract:
    async def test_the_same_result_twice_is_accepted_and_nothing_is_nothing(
        self, uows: Uows
    ) -> None:
        envelope = envelope_for(TenantDeactivated(tenant_id=fresh()))
        with pytest.raises(Rollback):
            async with uows("stage") as uow:
                await uow.outbox.add(envelope)
                await uow.outbox.add_many([envelope, envelope])
                await uow.outbox.add_many([])
                raise Rollback


class JobsContract:
    async def test_a_backup_request_rides_on_a_pending_backup_of_the_tenant(
        self, uows: Uows
    ) -> None:
        tenant_id, first, second = fresh(), f"b-{secrets.token_hex(8)}", f"b-{secrets.token_hex(8)}"
        with pytest.raises(Rollback):
            async with uows("queue") as uow:
                assert await uow.jobs.add_backup(first, tenant_id, fresh("e"), "corr") == first
                assert await uow.jobs.add_backup(second, tenant_id, fresh("e"), "corr") == first
                assert await uow.jobs.add_backup(second, fresh(), fresh("e"), "corr") == second
                raise Rollback

    async def test_jobs_are_queued_once_per_id_and_unknown_backups_are_absent(
        self, uows: Uows
    ) -> None:
        tenant_id, job_id = fresh(), f"e-{secrets.token_hex(8)}"
        with pytest.raises(Rollback):
            async with uows("queue") as uow:
                await uow.jobs.add(job_id, "erase", tenant_id, fresh("e"), "corr", archive=True)
                await uow.jobs.add(job_id, "erase", tenant_id, fresh("e"), "corr")
                assert await uow.jobs.has_backup(tenant_id, "latest") is False
                assert await uow.jobs.has_backup(tenant_id, "b-none") is False
                raise Rollback


class RolloutsContract:
    async def test_an_unknown_rollout_has_no_status(self, uows: Uows) -> None:
        async with uows("read") as uow:
            assert await uow.rollouts.status(fresh("r")) is None


class StoreContracts(
    TenantRegistryContract, InboxContract, OutboxContract, JobsContract, RolloutsContract
):
    """Every store's contract; a subclass named Test* supplies ``uows``."""
