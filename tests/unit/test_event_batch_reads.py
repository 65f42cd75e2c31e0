"""EventBatch on fakes: the rows read once for the batch, and savepoints opened only when needed.

An event of a batch that only reads its tenant is answered from the registry rows the batch
read under the tenants' locks, with no statement and no savepoint of its own; the first event
that sends a statement opens its savepoint and makes every later event read afresh.
"""

import pytest

from contracts.codec import Decoded
from contracts.events import TenantProvisioned, TenantProvisioningFailed, TenantRequested
from service.provisioning import ProvisioningService
from tests.unit.fakes import FakeStores, tenant
from tests.unit.use_case_support import TEMPLATE, decoded, result_types, transaction


def provisioning(stores: FakeStores) -> ProvisioningService:
    return ProvisioningService(
        transaction(stores), TEMPLATE, plans=frozenset({"basic", "pro"}), max_tenants=10,
        source="urn:tests",
    )


async def run_batch(stores: FakeStores, events: list[Decoded[TenantRequested]]) -> list[object]:
    service = provisioning(stores)
    outcomes: list[object] = []
    async with service._transaction.batch() as batch:
        new = await batch.claim([e.envelope for e in events])
        for event in events:
            if event.envelope.id not in new:
                outcomes.append(None)
                continue
            try:
                async with batch.event(event.envelope):
                    outcomes.append(await service.handle(event))
            except RuntimeError as e:
                outcomes.append(e)
    return outcomes


async def test_repeated_requests_are_answered_from_the_rows_read_once() -> None:
    stores = FakeStores()
    for tenant_id in ("beta", "acme"):
        stores.state.tenants[tenant_id] = tenant(tenant_id, plan="pro", version=3)
    events = [decoded(TenantRequested(tenant_id=t, plan="pro")) for t in ("beta", "acme") * 3]
    outcomes = await run_batch(stores, events)
    assert [o.tenant_id for o in outcomes if isinstance(o, TenantProvisioned)] == [
        "beta", "acme"] * 3
    assert stores.locked == ["acme", "beta"]  # both locks in one go, in order, once
    assert stores.reads == []  # no row read event by event
    assert stores.savepoints == 0  # nothing written, so nothing to undo
    assert result_types(stores) == ["TenantProvisioned"] * 6


async def test_after_an_event_writes_the_rows_read_before_are_not_trusted() -> None:
    """The rows read at the claim say gamma does not exist; once the first event has created
    it, the second request for it must see it (or it would try to create it again)."""
    stores = FakeStores()
    first, second = (decoded(TenantRequested(tenant_id="gamma", plan="pro")) for _ in range(2))
    outcomes = await run_batch(stores, [first, second])
    assert all(isinstance(o, TenantProvisioned) for o in outcomes), outcomes
    assert stores.reads == ["gamma"]  # the second read afresh
    assert stores.savepoints >= 2  # the creating event's own, and its DDL's inside it
    assert result_types(stores) == ["TenantProvisioned"] * 2


async def test_a_conflicting_request_after_a_write_is_decided_on_the_written_row() -> None:
    stores = FakeStores()
    create = decoded(TenantRequested(tenant_id="gamma", plan="pro"))
    conflict = decoded(TenantRequested(tenant_id="gamma", plan="basic"))
    outcomes = await run_batch(stores, [create, conflict])
    assert isinstance(outcomes[0], TenantProvisioned)
    assert isinstance(outcomes[1], TenantProvisioningFailed) and outcomes[1].reason == "conflict"


async def test_an_event_failing_after_it_wrote_is_undone_alone() -> None:
    stores = FakeStores()
    stores.state.tenants["acme"] = tenant("acme", plan="pro", version=3)
    repeat = decoded(TenantRequested(tenant_id="acme", plan="pro"))
    new = decoded(TenantRequested(tenant_id="gamma", plan="pro"))
    service = provisioning(stores)
    async with service._transaction.batch() as batch:
        assert await batch.claim([repeat.envelope, new.envelope]) == {
            repeat.envelope.id, new.envelope.id}
        async with batch.event(repeat.envelope):
            assert isinstance(await service.handle(repeat), TenantProvisioned)
        with pytest.raises(RuntimeError):
            async with batch.event(new.envelope):
                await service.handle(new)
                raise RuntimeError("after the tenant was made")
    assert "gamma" not in stores.state.tenants  # its savepoint undid the schema
    # Given back: it runs again on its own.
    assert ("tenant-provisioner", new.envelope.id) not in stores.state.inbox
    assert result_types(stores) == ["TenantProvisioned"]  # the repeat's only


async def test_an_event_failing_before_any_statement_leaves_nothing_and_the_rest_commits() -> None:
    stores = FakeStores()
    stores.state.tenants["acme"] = tenant("acme", plan="pro", version=3)
    bad, good = (decoded(TenantRequested(tenant_id="acme", plan="pro")) for _ in range(2))
    service = provisioning(stores)
    async with service._transaction.batch() as batch:
        await batch.claim([bad.envelope, good.envelope])
        with pytest.raises(RuntimeError):
            async with batch.event(bad.envelope):
                raise RuntimeError("before any statement")
        async with batch.event(good.envelope):
            assert isinstance(await service.handle(good), TenantProvisioned)
    assert stores.savepoints == 0
    inbox = {i for _, i in stores.state.inbox}
    assert bad.envelope.id not in inbox and good.envelope.id in inbox
    assert result_types(stores) == ["TenantProvisioned"]
