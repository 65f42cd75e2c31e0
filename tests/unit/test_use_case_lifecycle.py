"""LifecycleService on fakes: suspend, resume, erase acceptance and per-tenant migrations."""

import pytest

from contracts.events import (
    TenantDeactivated,
    TenantErased,
    TenantEraseFailed,
    TenantEraseRequested,
    TenantMigrated,
    TenantMigrationDue,
    TenantMigrationFailed,
    TenantReactivated,
    TenantResumed,
    TenantResumeFailed,
    TenantSuspended,
    TenantSuspendFailed,
)
from domain.errors import PermanentError, StatementTimeout, TransientError
from domain.lifecycle import TenantStatus
from service.event_transaction import Accepted
from service.lifecycle import LifecycleService
from tests.unit.fakes import FakeStores, tenant
from tests.unit.use_case_support import TEMPLATE, decoded, result_types, transaction


def service(stores: FakeStores) -> LifecycleService:
    return LifecycleService(
        transaction(stores),
        TEMPLATE,
        migration_lock_timeout_ms=500,
        migration_statement_timeout_ms=9000,
        source="urn:tests",
    )


def with_tenant(**kwargs: object) -> FakeStores:
    stores = FakeStores()
    stores.state.tenants["acme"] = tenant("acme", **kwargs)  # type: ignore[arg-type]
    stores.state.access["acme"] = True
    return stores


# -- suspend and resume ---------------------------------------------------------------------


async def test_suspend_cuts_access_ends_sessions_and_records_the_status() -> None:
    stores = with_tenant()
    stores.sessions["acme"] = 2
    outcome = await service(stores).deactivated(decoded(TenantDeactivated(tenant_id="acme")))
    assert isinstance(outcome, TenantSuspended)
    assert stores.state.tenants["acme"].status == TenantStatus.SUSPENDED
    assert stores.state.access["acme"] is False and stores.sessions == {}
    assert stores.locked == ["acme"]
    assert result_types(stores) == ["TenantSuspended"]


async def test_resume_gives_access_back() -> None:
    stores = with_tenant(status=TenantStatus.SUSPENDED)
    stores.state.access["acme"] = False
    outcome = await service(stores).reactivated(decoded(TenantReactivated(tenant_id="acme")))
    assert isinstance(outcome, TenantResumed)
    assert stores.state.tenants["acme"].status == TenantStatus.ACTIVE
    assert stores.state.access["acme"] is True


@pytest.mark.parametrize(
    ("tenant_id", "status", "reason"),
    [
        ("nobody", None, "unknown_tenant"),
        ("A!", None, "unknown_tenant"),  # not even a valid id: no lock taken
        ("acme", TenantStatus.ERASING, "erasing"),
        ("acme", TenantStatus.ERASED, "erased"),
    ],
)
async def test_suspend_and_resume_are_refused_as_results(
    tenant_id: str, status: TenantStatus | None, reason: str
) -> None:
    stores = with_tenant(status=status) if status else FakeStores()
    suspended = await service(stores).deactivated(decoded(TenantDeactivated(tenant_id=tenant_id)))
    resumed = await service(stores).reactivated(decoded(TenantReactivated(tenant_id=tenant_id)))
    assert isinstance(suspended, TenantSuspendFailed) and suspended.reason == reason
    assert isinstance(resumed, TenantResumeFailed) and resumed.reason == reason
    assert result_types(stores) == ["TenantSuspendFailed", "TenantResumeFailed"]
    if status is not None:
        assert stores.state.tenants["acme"].status == status  # unchanged


async def test_a_redelivered_suspend_is_answered_once() -> None:
    stores = with_tenant()
    event = decoded(TenantDeactivated(tenant_id="acme"))
    await service(stores).deactivated(event)
    assert await service(stores).deactivated(event) is None
    assert result_types(stores) == ["TenantSuspended"]


# -- erase acceptance -----------------------------------------------------------------------


async def test_the_first_erase_is_terminal_at_once_and_queues_the_job() -> None:
    stores = with_tenant()
    event = decoded(TenantEraseRequested(tenant_id="acme", archive=True))
    outcome = await service(stores).erase_requested(event)
    assert isinstance(outcome, Accepted) and outcome.job_id.startswith("e-")
    record = stores.state.tenants["acme"]
    assert record.status == TenantStatus.ERASING
    assert record.erase_archive_id == "a-" + outcome.job_id[2:]
    job = stores.state.jobs[outcome.job_id]
    assert (job["kind"], job["archive"], job["cause_id"]) == ("erase", True, event.envelope.id)
    assert stores.state.access["acme"] is False
    assert stores.results == []  # the result comes from the job, later


async def test_a_second_erase_joins_the_first_with_its_archive() -> None:
    stores = with_tenant(status=TenantStatus.ERASING, archive="a-first")
    outcome = await service(stores).erase_requested(
        decoded(TenantEraseRequested(tenant_id="acme", archive=False))
    )
    assert isinstance(outcome, Accepted)
    assert stores.state.jobs[outcome.job_id]["archive"] is True  # the first erase decided
    assert stores.state.tenants["acme"].erase_archive_id == "a-first"


async def test_an_erase_after_the_erase_answers_erased_again() -> None:
    stores = with_tenant(status=TenantStatus.ERASED, archive="a-first")
    outcome = await service(stores).erase_requested(decoded(TenantEraseRequested(tenant_id="acme")))
    assert isinstance(outcome, TenantErased) and outcome.archive_backup_id == "a-first"
    assert stores.state.jobs == {}
    assert result_types(stores) == ["TenantErased"]


async def test_an_erase_of_an_unknown_tenant_fails_as_a_result() -> None:
    stores = FakeStores()
    outcome = await service(stores).erase_requested(decoded(TenantEraseRequested(tenant_id="nobody")))
    assert isinstance(outcome, TenantEraseFailed) and outcome.reason == "unknown_tenant"


# -- migrations -----------------------------------------------------------------------------


def due(target: int = 3, rollout: str = "r1") -> TenantMigrationDue:
    return TenantMigrationDue(tenant_id="acme", target_version=target, rollout_id=rollout)


async def test_a_migration_runs_within_its_time_budget_and_records_the_version() -> None:
    stores = with_tenant(version=1)
    outcome = await service(stores).migration_due(decoded(due()))
    assert isinstance(outcome, TenantMigrated)
    assert (outcome.from_version, outcome.to_version) == (1, 3)
    assert stores.state.tenants["acme"].schema_version == 3
    assert stores.units[-1].time_limits == (500, 9000)


async def test_a_migration_to_the_current_version_does_nothing() -> None:
    stores = with_tenant(version=3)
    outcome = await service(stores).migration_due(decoded(due()))
    assert isinstance(outcome, TenantMigrated) and outcome.from_version == outcome.to_version == 3
    assert stores.units[-1].time_limits is None


@pytest.mark.parametrize(
    ("arrange", "reason"),
    [
        (lambda s: s.state.rollouts.update(r1="halted"), "rollout_halted"),
        (lambda s: s.state.tenants.clear(), "unknown_tenant"),
        (lambda s: s.faults.__setattr__("migrate", PermanentError("database_error", "bad")),
         "migration_error"),
        (lambda s: s.faults.__setattr__("migrate", StatementTimeout("migrate acme: slow")),
         "timeout"),
    ],
)
async def test_a_migration_that_cannot_succeed_fails_as_a_result(arrange, reason: str) -> None:  # type: ignore[no-untyped-def]
    stores = with_tenant(version=1)
    arrange(stores)
    outcome = await service(stores).migration_due(decoded(due()))
    assert isinstance(outcome, TenantMigrationFailed) and outcome.reason == reason
    assert result_types(stores) == ["TenantMigrationFailed"]
    if "acme" in stores.state.tenants:
        assert stores.state.tenants["acme"].schema_version == 1  # the savepoint undid it


async def test_a_migration_to_a_version_the_template_lacks_is_an_invalid_target() -> None:
    stores = with_tenant(version=1)
    outcome = await service(stores).migration_due(decoded(due(target=9)))
    assert isinstance(outcome, TenantMigrationFailed) and outcome.reason == "invalid_target"


async def test_a_lock_timeout_rolls_the_migration_back_for_a_retry() -> None:
    stores = with_tenant(version=1)
    stores.faults.migrate = TransientError("lock timeout")
    with pytest.raises(TransientError):
        await service(stores).migration_due(decoded(due()))
    assert stores.state.inbox == set() and stores.results == []
    assert stores.state.tenants["acme"].schema_version == 1
