"""ProvisioningService on fakes: one decision per request, results through the outbox."""

import pytest

from contracts.events import TenantProvisioned, TenantProvisioningFailed, TenantRequested
from domain.errors import PermanentError, TransientError
from domain.lifecycle import TenantStatus
from service.provisioning import ProvisioningService
from tests.unit.fakes import FakeStores, tenant
from tests.unit.use_case_support import TEMPLATE, decoded, result_types, transaction


def service(stores: FakeStores, max_tenants: int = 10) -> ProvisioningService:
    return ProvisioningService(
        transaction(stores),
        TEMPLATE,
        plans=frozenset({"basic", "pro"}),
        max_tenants=max_tenants,
        source="urn:tests",
    )


async def test_a_request_provisions_the_tenant_at_the_latest_version_and_states_it() -> None:
    stores = FakeStores()
    outcome = await service(stores).handle(decoded(TenantRequested(tenant_id="acme", plan="pro")))
    assert isinstance(outcome, TenantProvisioned)
    assert outcome.schema_version == 3
    assert stores.state.tenants["acme"].plan == "pro"
    assert result_types(stores) == ["TenantProvisioned"]
    assert stores.units[-1].committed is True
    assert stores.locked == ["acme"]


async def test_the_same_event_twice_is_provisioned_once_and_answered_once() -> None:
    stores = FakeStores()
    event = decoded(TenantRequested(tenant_id="acme", plan="pro"))
    await service(stores).handle(event)
    assert await service(stores).handle(event) is None
    assert result_types(stores) == ["TenantProvisioned"]


async def test_a_new_request_for_a_provisioned_tenant_answers_provisioned_again() -> None:
    stores = FakeStores()
    stores.state.tenants["acme"] = tenant("acme", plan="pro", version=2)
    outcome = await service(stores).handle(decoded(TenantRequested(tenant_id="acme", plan="pro")))
    assert isinstance(outcome, TenantProvisioned)
    assert outcome.schema_version == 2  # the registry's row, not a new schema


@pytest.mark.parametrize(
    ("tenant_id", "plan", "reason"),
    [("A!", "pro", "invalid_tenant_id"), ("acme", "gold", "unknown_plan")],
)
async def test_a_request_refused_on_its_own_never_reads_the_registry(
    tenant_id: str, plan: str, reason: str
) -> None:
    stores = FakeStores()
    outcome = await service(stores).handle(decoded(TenantRequested(tenant_id=tenant_id, plan=plan)))
    assert isinstance(outcome, TenantProvisioningFailed)
    assert outcome.reason == reason
    assert stores.locked == []  # one decision: no lock, no registry read for a bad request
    assert result_types(stores) == ["TenantProvisioningFailed"]


@pytest.mark.parametrize(
    ("existing", "detail"),
    [
        (tenant("acme", plan="basic"), "tenant exists with plan 'basic', not 'pro'"),
        (tenant("acme", plan="pro", status=TenantStatus.ERASED), "tenant is erased"),
    ],
)
async def test_a_conflicting_registry_row_is_refused_with_the_reason(
    existing: object, detail: str
) -> None:
    stores = FakeStores()
    stores.state.tenants["acme"] = existing  # type: ignore[assignment]
    outcome = await service(stores).handle(decoded(TenantRequested(tenant_id="acme", plan="pro")))
    assert isinstance(outcome, TenantProvisioningFailed)
    assert (outcome.reason, outcome.detail[: len(detail)]) == ("conflict", detail)


async def test_the_quota_refuses_a_new_tenant_but_erased_ones_do_not_count() -> None:
    stores = FakeStores()
    stores.state.tenants["gone"] = tenant("gone", status=TenantStatus.ERASED)
    assert isinstance(
        await service(stores, max_tenants=1).handle(decoded(TenantRequested(tenant_id="one", plan="pro"))),
        TenantProvisioned,
    )
    refused = await service(stores, max_tenants=1).handle(
        decoded(TenantRequested(tenant_id="two", plan="pro"))
    )
    assert isinstance(refused, TenantProvisioningFailed)
    assert refused.reason == "quota_exceeded"
    assert "two" not in stores.state.tenants


async def test_a_ddl_failure_is_a_result_and_only_the_ddl_is_undone() -> None:
    stores = FakeStores()
    stores.faults.create = PermanentError("database_error", "provision acme: boom")
    event = decoded(TenantRequested(tenant_id="acme", plan="pro"))
    outcome = await service(stores).handle(event)
    assert isinstance(outcome, TenantProvisioningFailed)
    assert (outcome.reason, outcome.detail) == ("database_error", "provision acme: boom")
    assert "acme" not in stores.state.access  # the savepoint undid the half-done create
    assert ("tenant-provisioner", event.envelope.id) in stores.state.inbox
    assert result_types(stores) == ["TenantProvisioningFailed"]
    assert stores.units[-1].committed is True


async def test_a_transient_failure_rolls_everything_back_for_a_redelivery() -> None:
    stores = FakeStores()
    stores.faults.create = TransientError("connection lost")
    event = decoded(TenantRequested(tenant_id="acme", plan="pro"))
    with pytest.raises(TransientError):
        await service(stores).handle(event)
    assert stores.state.inbox == set() and stores.results == []
    assert stores.units[-1].committed is False
    stores.faults.create = None  # the redelivery succeeds
    assert isinstance(await service(stores).handle(event), TenantProvisioned)


async def test_an_outbox_failure_undoes_the_tenant_too() -> None:
    stores = FakeStores()
    stores.faults.outbox = TransientError("outbox")
    with pytest.raises(TransientError):
        await service(stores).handle(decoded(TenantRequested(tenant_id="acme", plan="pro")))
    assert stores.state.tenants == {} and stores.state.inbox == set()


async def test_a_warm_pool_schema_is_claimed_first_and_the_result_looks_the_same() -> None:
    stores = FakeStores()
    stores.state.pooled = [list(TEMPLATE)]
    first = await service(stores).handle(decoded(TenantRequested(tenant_id="acme", plan="pro")))
    second = await service(stores).handle(decoded(TenantRequested(tenant_id="beta", plan="pro")))
    assert stores.state.claimed == ["acme"]  # the pool held one; beta was created
    assert isinstance(first, TenantProvisioned) and isinstance(second, TenantProvisioned)
    assert first.model_dump(exclude={"tenant_id", "schema_name", "role_name"}) == second.model_dump(
        exclude={"tenant_id", "schema_name", "role_name"}
    )


async def test_a_failed_claim_gives_the_pooled_schema_back() -> None:
    stores = FakeStores()
    stores.state.pooled = [list(TEMPLATE)]
    stores.faults.create = PermanentError("database_error", "boom")
    outcome = await service(stores).handle(decoded(TenantRequested(tenant_id="acme", plan="pro")))
    assert isinstance(outcome, TenantProvisioningFailed)
    assert stores.state.pooled == [list(TEMPLATE)] and stores.state.claimed == []


@pytest.mark.parametrize("pooled", [0, 1])
async def test_a_new_tenant_is_provisioned_inside_a_batch_as_on_its_own(pooled: int) -> None:
    stores = FakeStores()
    stores.state.pooled = [list(TEMPLATE)] * pooled
    tx = transaction(stores)
    provisioning = ProvisioningService(
        tx, TEMPLATE, plans=frozenset({"pro"}), max_tenants=10, source="urn:tests"
    )
    event = decoded(TenantRequested(tenant_id="acme", plan="pro"))
    async with tx.batch() as batch:
        assert await batch.claim([event.envelope]) == {event.envelope.id}
        async with batch.event(event.envelope):
            outcome = await provisioning.handle(event)
    assert isinstance(outcome, TenantProvisioned)
    assert stores.state.claimed == ["acme"] * pooled
    assert result_types(stores) == ["TenantProvisioned"]
    assert len(stores.units) == 1  # one transaction: the batch's


def test_an_event_of_a_batch_sees_every_store_a_unit_of_work_has() -> None:
    from service.event_batch import EventBatch, _EventUnit
    from service.unit_of_work import UnitOfWork

    stores = [n for n, v in vars(UnitOfWork).items() if isinstance(v, property)]
    assert stores, "the UnitOfWork protocol names no stores"
    unit = _EventUnit(EventBatch(FakeStores()(), "tenant-provisioner"))
    missing = [n for n in stores if not hasattr(unit, n)]
    assert not missing, f"a batch's event unit lacks {missing}"


async def test_a_reserved_id_is_refused_as_invalid_before_the_registry_is_read() -> None:
    stores = FakeStores()
    provisioning = ProvisioningService(
        transaction(stores), TEMPLATE, plans=frozenset({"pro"}), max_tenants=10,
        source="urn:tests", reserved_ids=frozenset({"service"}),
    )
    outcome = await provisioning.handle(decoded(TenantRequested(tenant_id="service", plan="pro")))
    assert isinstance(outcome, TenantProvisioningFailed)
    assert outcome.reason == "invalid_tenant_id" and "reserved" in outcome.detail
    assert stores.locked == [] and stores.state.tenants == {}
