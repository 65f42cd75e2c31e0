"""Migrations in a batch transaction on fakes: each tenant's time limits bound its own savepoint
only, and a failing tenant is answered (or undone) alone while the others commit together."""

from typing import Any

import pytest

from contracts.events import TenantMigrationDue
from domain.errors import PermanentError, StatementTimeout, TransientError
from service.lifecycle import LifecycleService
from tests.unit.fakes import FakeStores, tenant
from tests.unit.fakes.stores import FakeTenants
from tests.unit.use_case_support import TEMPLATE, decoded, transaction

LIMITS = (500, 9000)


def rollout_of(*tenant_ids: str) -> tuple[FakeStores, LifecycleService, list[Any]]:
    stores = FakeStores()
    for tenant_id in tenant_ids:
        stores.state.tenants[tenant_id] = tenant(tenant_id, version=1)
    lifecycle = LifecycleService(
        transaction(stores), TEMPLATE, migration_lock_timeout_ms=LIMITS[0],
        migration_statement_timeout_ms=LIMITS[1], source="urn:tests",
    )
    dues = [decoded(TenantMigrationDue(tenant_id=t, target_version=3, rollout_id="r1"))
            for t in tenant_ids]
    return stores, lifecycle, dues


async def run_batch(stores: FakeStores, lifecycle: LifecycleService, dues: list[Any],
                    ) -> tuple[list[str], list[tuple[int, int] | None]]:
    """Every due in one batch transaction (a savepoint each), as BatchDelivery runs them;
    answers the tenants whose event raised, and the limits in force between events."""
    raised: list[str] = []
    between: list[tuple[int, int] | None] = []
    async with lifecycle._transaction.batch() as batch:
        await batch.claim([d.envelope for d in dues])
        for due in dues:
            try:
                async with batch.event(due.envelope):
                    await lifecycle.migration_due(due)
            except TransientError:
                raised.append(due.event.tenant_id)
            between.append(stores.units[0].time_limits)
    return raised, between


@pytest.fixture
def limits_at_migrate(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int] | None]:
    """The time limits of the (only) unit of work each time a tenant's DDL runs."""
    seen: list[tuple[int, int] | None] = []
    migrate = FakeTenants.migrate

    async def watched(self: FakeTenants, tenant_id: str, steps: Any) -> int:
        seen.append(self._s.units[0].time_limits)
        return await migrate(self, tenant_id, steps)

    monkeypatch.setattr(FakeTenants, "migrate", watched)
    return seen


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(StatementTimeout("migrate beta: slow"), "timeout"),
     (PermanentError("database_error", "column exists"), "migration_error")],
)
async def test_a_failing_migration_in_a_batch_is_answered_alone_and_the_others_commit(
    fault: BaseException, reason: str, limits_at_migrate: list[tuple[int, int] | None],
) -> None:
    stores, lifecycle, dues = rollout_of("acme", "beta", "gamma")
    stores.faults.migrate_of["beta"] = fault

    raised, between = await run_batch(stores, lifecycle, dues)

    assert len(stores.units) == 1 and stores.units[0].committed is True  # one commit for all
    assert raised == []
    assert limits_at_migrate == [LIMITS] * 3  # each tenant's DDL ran under its own budget
    assert between == [None] * 3  # lifted after each event: they never bound the next
    assert [(e.type, e.subject) for e in stores.results] == [
        ("TenantMigrated", "acme"), ("TenantMigrationFailed", "beta"), ("TenantMigrated", "gamma")]
    assert stores.results[1].data["reason"] == reason
    versions = {t: r.schema_version for t, r in stores.state.tenants.items()}
    assert versions == {"acme": 3, "beta": 1, "gamma": 3}
    assert {("tenant-provisioner", d.envelope.id) for d in dues} == stores.state.inbox


async def test_a_lock_timeout_in_a_batch_undoes_that_tenant_alone_for_a_retry() -> None:
    stores, lifecycle, dues = rollout_of("acme", "beta", "gamma")
    stores.faults.migrate_of["beta"] = TransientError("lock timeout")

    raised, between = await run_batch(stores, lifecycle, dues)

    assert raised == ["beta"] and between == [None] * 3
    assert [(e.type, e.subject) for e in stores.results] == [
        ("TenantMigrated", "acme"), ("TenantMigrated", "gamma")]
    assert stores.state.tenants["beta"].schema_version == 1
    # its inbox row was given back: the event is tried again on its own
    assert ("tenant-provisioner", dues[1].envelope.id) not in stores.state.inbox


async def test_lifting_an_events_time_limits_failing_undoes_that_event_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database refusing to lift the limits (it went away after the DDL) fails the event
    that set them: its work, claim and results are undone, and the error reaches the caller."""
    from tests.unit.fakes.stores import FakeUnitOfWork

    stores, lifecycle, dues = rollout_of("acme", "beta", "gamma")
    end = FakeUnitOfWork.end_time_limits
    calls = 0

    async def failing_second(self: FakeUnitOfWork) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # beta's
            raise TransientError("connection lost")
        await end(self)

    monkeypatch.setattr(FakeUnitOfWork, "end_time_limits", failing_second)

    raised, _ = await run_batch(stores, lifecycle, dues)

    assert raised == ["beta"]
    assert [(e.type, e.subject) for e in stores.results] == [
        ("TenantMigrated", "acme"), ("TenantMigrated", "gamma")]
    assert stores.state.tenants["beta"].schema_version == 1
    assert ("tenant-provisioner", dues[1].envelope.id) not in stores.state.inbox
