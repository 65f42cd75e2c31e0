"""Provisioning refusals end to end: a permanent DDL error is a TenantProvisioningFailed
{database_error} whose inbox and outbox rows still commit (the DDL alone is rolled back), and
TENANT_MAX_TENANTS answers TenantProvisioningFailed{quota_exceeded} without DDL."""

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.migration_files import load_migrations
from contracts import topics
from domain.tenant_ids import quote_ident
from migrations import TENANT_DIR
from runtime.settings import Settings
from tests.support import names as ns
from tests.support import postgres as db
from tests.support.kafka import ResultLog, group_members, publish, requested
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack


async def test_a_permanent_ddl_error_is_a_failed_result_with_inbox_and_outbox_committed(
    results: ResultLog, publisher: KafkaEventPublisher, tenants: TenantIds, pg: asyncpg.Connection
) -> None:
    tenant_id = tenants.new()
    # The tenant's role exists already (left by hand, say): CREATE ROLE fails, and no retry
    # would change that.
    await pg.execute(f"CREATE ROLE {quote_ident(ns.tenant(tenant_id))} NOLOGIN")
    try:
        request = requested(tenant_id)
        await publish(publisher, request)
        answer = await results.first(request.id)
    finally:
        await pg.execute(f"DROP ROLE IF EXISTS {quote_ident(ns.tenant(tenant_id))}")

    assert answer.type == "TenantProvisioningFailed", answer
    assert answer.data["reason"] == "database_error"
    assert await db.inbox_count(pg, topics.PROVISIONER_GROUP, request.id) == 1
    assert await db.outbox_row(pg, answer.id) is not None
    assert not await db.schema_exists(pg, ns.tenant(tenant_id))  # the DDL was rolled back
    assert await db.registry_row(pg, tenant_id) is None


@pytest.fixture
async def capped_worker(
    session_worker: SessionWorker, settings: Settings, log_dir: Path, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> AsyncIterator[WorkerProcess]:
    """The only provisioner, capped at the number of live tenants there are now."""
    await session_worker.stop()
    store = ns.tenant_store()
    async with pg.transaction():  # at least one live tenant, so the cap is a valid setting
        await store.create(pg, tenants.new(), "free", load_migrations(TENANT_DIR))
    live = await store.count_live(pg)
    worker = WorkerProcess(
        ["provisioner", "relay"], log_dir / "capped.log", {"TENANT_MAX_TENANTS": str(live)}
    )
    try:

        async def group_empty() -> bool:
            return not (await group_members(settings, topics.PROVISIONER_GROUP))[1]

        await wait_until(group_empty, 30, what="no other member in tenant-provisioner", interval=0.5)
        await worker.start()
        yield worker
    finally:
        if worker.running:
            await worker.terminate(settings.shutdown_grace_s + 10)
        await session_worker.start()


async def test_a_request_past_max_tenants_is_refused_with_quota_exceeded(
    capped_worker: WorkerProcess, settings: Settings, publisher: KafkaEventPublisher,
    tenants: TenantIds, pg: asyncpg.Connection,
) -> None:
    tenant_id = tenants.new()
    request = requested(tenant_id)
    async with ResultLog(settings) as results:
        await publish(publisher, request)
        answer = await results.first(request.id)

    assert answer.type == "TenantProvisioningFailed", answer
    assert answer.data["reason"] == "quota_exceeded"
    assert not await db.schema_exists(pg, ns.tenant(tenant_id))
    assert await db.registry_row(pg, tenant_id) is None
    assert await db.inbox_count(pg, topics.PROVISIONER_GROUP, request.id) == 1
