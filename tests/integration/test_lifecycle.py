"""Suspend and resume through tenants.lifecycle: membership, sessions, status, idempotency,
per-tenant order, and one result for every request (an unknown tenant's included)."""

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts.events import TenantDeactivated, TenantEraseRequested, TenantReactivated
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import TenantIds

pytestmark = pytest.mark.stack


async def _status(pg: asyncpg.Connection, tenant_id: str) -> str:
    return str(await pg.fetchval(
        f"SELECT status FROM {ns.CONTROL}.tenants WHERE tenant_id = $1", tenant_id))


async def test_suspend_revokes_access_and_ends_sessions_then_resume_restores_it(
    publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds, settings: Settings,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["kept"])
    # An application session of this tenant, tagged by the convention (README): metrics count it
    # and suspension ends it.
    session = await asyncpg.connect(settings.pg_dsn.get_secret_value(),
                                     server_settings={"application_name": ns.session_tag(tenant_id)})
    pid = session.get_server_pid()
    try:
        counted = {r["tenant_id"]: r["connections"]
                   for r in await ns.names().tenant_metrics().collect(pg)}
        assert counted[tenant_id] == 1

        suspended = await bk.ask(publisher, results,
                                 TenantDeactivated(tenant_id=tenant_id, reason="unpaid"))

        assert suspended.type == "TenantSuspended" and suspended.data == {"tenant_id": tenant_id}
        assert not await bk.app_is_member(pg, tenant_id)
        assert await _status(pg, tenant_id) == "suspended"
        assert not await pg.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await session.fetchval("SELECT 1")
        assert await bk.user_names(pg, tenant_id) == ["kept"]
    finally:
        session.terminate()

    resumed = await bk.ask(publisher, results, TenantReactivated(tenant_id=tenant_id))

    assert resumed.type == "TenantResumed"
    assert await bk.app_is_member(pg, tenant_id)
    assert await _status(pg, tenant_id) == "active"
    rows = await bk.as_tenant(pg, tenant_id, f'SELECT count(*) AS n FROM "{ns.tenant(tenant_id)}".users')
    assert [r["n"] for r in rows] == [1]


async def test_suspend_and_resume_are_idempotent(
    publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    first = bk.envelope(TenantDeactivated(tenant_id=tenant_id))
    await bk.send(publisher, first)
    await bk.send(publisher, first)
    # Consumed after both copies (same key, same partition).
    again = await bk.ask(publisher, results, TenantDeactivated(tenant_id=tenant_id))
    resume = bk.envelope(TenantReactivated(tenant_id=tenant_id))
    await bk.send(publisher, resume)
    await bk.send(publisher, resume)
    resumed_again = await bk.ask(publisher, results, TenantReactivated(tenant_id=tenant_id))

    assert again.type == "TenantSuspended" and resumed_again.type == "TenantResumed"
    assert [e.type for e in results.caused_by(first.id)] == ["TenantSuspended"]
    assert [e.type for e in results.caused_by(resume.id)] == ["TenantResumed"]
    assert await _status(pg, tenant_id) == "active" and await bk.app_is_member(pg, tenant_id)


async def test_back_to_back_deactivate_then_reactivate_ends_active(
    publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    down = await bk.send(publisher, bk.envelope(TenantDeactivated(tenant_id=tenant_id)))
    up = await bk.send(publisher, bk.envelope(TenantReactivated(tenant_id=tenant_id)))

    got = await results.all_of([down.id, up.id])

    assert (got[down.id].type, got[up.id].type) == ("TenantSuspended", "TenantResumed")
    order = [e.causationid for e in results.seen if e.causationid in (down.id, up.id)]
    assert order == [down.id, up.id]
    assert await _status(pg, tenant_id) == "active" and await bk.app_is_member(pg, tenant_id)


@pytest.mark.parametrize(("event", "answer"), [
    (TenantDeactivated, "TenantSuspendFailed"),
    (TenantReactivated, "TenantResumeFailed"),
    (TenantEraseRequested, "TenantEraseFailed"),
])
async def test_a_request_for_an_unknown_tenant_gets_a_failed_result(
    publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds, event: type[TenantDeactivated | TenantReactivated | TenantEraseRequested],
    answer: str,
) -> None:
    never_provisioned = tenants.new()

    got = await bk.ask(publisher, results, event(tenant_id=never_provisioned))

    assert (got.type, got.data["reason"]) == (answer, "unknown_tenant")
    assert got.data["tenant_id"] == never_provisioned
    assert not await pg.fetchval(
        f"SELECT 1 FROM {ns.CONTROL}.tenants WHERE tenant_id = $1", never_provisioned)
