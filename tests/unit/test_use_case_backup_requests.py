"""BackupRequests on fakes: a request becomes a job, or an immediate *Failed result."""

from contracts.events import BackupDue, BackupFailed, RestoreFailed, RestoreRequested
from domain.lifecycle import TenantStatus
from service.backups import BackupRequests
from service.event_transaction import Accepted
from tests.unit.fakes import FakeStores, catalogued, tenant
from tests.unit.use_case_support import decoded, result_types, transaction


def requests(stores: FakeStores) -> BackupRequests:
    return BackupRequests(transaction(stores, "tenant-backup"), "urn:tests")


async def test_a_backup_request_queues_a_job_and_a_second_rides_on_it() -> None:
    stores = FakeStores()
    stores.state.tenants["acme"] = tenant("acme")
    first = await requests(stores).backup_due(decoded(BackupDue(tenant_id="acme")))
    second = await requests(stores).backup_due(decoded(BackupDue(tenant_id="acme")))
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    assert second.job_id == first.job_id  # not started yet: the second answer comes from it
    assert list(stores.state.jobs) == [first.job_id] and len(stores.state.riders) == 1
    assert stores.results == []


async def test_a_backup_of_an_unknown_or_erased_tenant_fails_at_once() -> None:
    stores = FakeStores()
    stores.state.tenants["gone"] = tenant("gone", status=TenantStatus.ERASED)
    for tenant_id in ("nobody", "gone"):
        outcome = await requests(stores).backup_due(decoded(BackupDue(tenant_id=tenant_id)))
        assert isinstance(outcome, BackupFailed) and outcome.reason == "unknown_tenant"
    assert result_types(stores) == ["BackupFailed", "BackupFailed"]
    assert stores.state.jobs == {}


async def test_a_restore_needs_a_catalogued_backup() -> None:
    stores = FakeStores()
    stores.state.tenants["acme"] = tenant("acme")
    missing = await requests(stores).restore_requested(decoded(RestoreRequested(tenant_id="acme")))
    assert isinstance(missing, RestoreFailed) and missing.reason == "backup_not_found"
    stores.state.catalogue["b-1"] = catalogued("acme", "b-1")
    event = decoded(RestoreRequested(tenant_id="acme", backup_id="b-1"))
    accepted = await requests(stores).restore_requested(event)
    assert isinstance(accepted, Accepted) and accepted.job_id.startswith("r-")
    job = stores.state.jobs[accepted.job_id]
    assert (job["kind"], job["backup_id"]) == ("restore", "b-1")
    assert await requests(stores).restore_requested(event) is None  # redelivered: once


async def test_a_restore_of_an_unknown_tenant_fails_at_once() -> None:
    stores = FakeStores()
    outcome = await requests(stores).restore_requested(decoded(RestoreRequested(tenant_id="x_1")))
    assert isinstance(outcome, RestoreFailed) and outcome.reason == "unknown_tenant"
