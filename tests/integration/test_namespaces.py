"""Two deployments (namespaces) on one Kafka, one PostgreSQL and one Redis: each handles only its
own events, keeps its own tenants (the same tenant id in both) and holds its own relay lock."""

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from domain.tenant_ids import quote_ident
from runtime.settings import Settings
from tests.support import postgres as db
from tests.support.kafka import ResultLog, publish, requested
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack


@contextlib.asynccontextmanager
async def deployment(
    settings: Settings, pg: asyncpg.Connection, log_dir: Path, namespace: str
) -> AsyncIterator[tuple[Settings, KafkaEventPublisher, ResultLog]]:
    """A provisioner+relay worker in ``namespace``, a publisher and a result log of its own;
    everything of the namespace is dropped afterwards."""
    mine = settings.model_copy(update={"namespace": namespace})
    worker = WorkerProcess(
        ("provisioner", "relay"), log_dir / f"ns-{namespace}.log", {"TENANT_NAMESPACE": namespace}
    )
    publisher = KafkaEventPublisher(mine.kafka, client_id=f"tests-{namespace}")
    try:
        await worker.start()
        await publisher.start()
        async with ResultLog(mine) as results:
            yield mine, publisher, results
    finally:
        await publisher.stop()
        if worker.running:
            assert await worker.terminate(settings.shutdown_grace_s + 10) == 0, worker.log_tail()
        await db.drop_namespace(pg, mine)


async def _tenant(pg: asyncpg.Connection, s: Settings, tenant_id: str) -> asyncpg.Record | None:
    table = f"{quote_ident(s.names.control_schema)}.tenants"
    return await pg.fetchrow(f"SELECT * FROM {table} WHERE tenant_id = $1", tenant_id)  # noqa: S608


async def _inbox(pg: asyncpg.Connection, s: Settings, event_id: str) -> int:
    table = f"{quote_ident(s.names.control_schema)}.inbox"
    return int(await pg.fetchval(f"SELECT count(*) FROM {table} WHERE event_id = $1", event_id))  # noqa: S608


async def _group_topics(s: Settings, group: str) -> set[str]:
    """The topics a consumer group has committed offsets on."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(s.names.topics.group(group))
    finally:
        await admin.close()
    return {tp.topic for tp in offsets}


async def test_two_namespaces_share_the_stack_and_nothing_else(
    settings: Settings, pg: asyncpg.Connection, log_dir: Path, tenants: TenantIds
) -> None:
    session = settings.names.namespace
    assert session, "the suite runs in a namespace of its own (tests/conftest.py)"
    tenant_id = tenants.new()  # the same id in both deployments
    async with (
        deployment(settings, pg, log_dir, f"{session}s") as (staging, st_pub, st_results),
        deployment(settings, pg, log_dir, f"{session}p") as (prod, pr_pub, pr_results),
    ):
        names = {s.names.namespace: s.names for s in (staging, prod)}
        assert len({n.outbox_lock_id for n in names.values()}) == 2
        # Published in staging only: staging answers it, prod never sees it.
        first = requested(tenant_id, "free")
        await publish(st_pub, first)
        done = await st_results.first(first.id)
        assert done.type == "TenantProvisioned"
        assert done.data["schema_name"] == f"{session}s_tenant_{tenant_id}"
        assert await _tenant(pg, prod, tenant_id) is None
        assert await _inbox(pg, prod, first.id) == 0
        assert pr_results.caused_by(first.id) == []

        # The same tenant id in prod, with another plan: no conflict with staging's tenant.
        second = requested(tenant_id, "pro")
        await publish(pr_pub, second)
        done = await pr_results.first(second.id)
        assert done.type == "TenantProvisioned", done.data
        assert done.data["schema_name"] == f"{session}p_tenant_{tenant_id}"
        assert st_results.caused_by(second.id) == []
        assert await _inbox(pg, staging, second.id) == 0
        rows = {ns: await _tenant(pg, s, tenant_id) for ns, s in ((1, staging), (2, prod))}
        assert {r["plan"] for r in rows.values() if r} == {"free", "pro"}
        for s in (staging, prod):
            for name in (s.names.tenant_prefix + tenant_id,):
                assert await db.schema_exists(pg, name)
                assert await pg.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name)
            # Each group consumed (committed offsets on) its own topic only.
            committed = await wait_until(
                lambda s=s: _group_topics(s, topics.PROVISIONER_GROUP), 15,
                what="the provisioner group's committed offsets",
            )
            assert committed == {s.names.topics.lifecycle}

        # Both relays delivered (above), so each held its own outbox lock at once: they are two.
        holders = await pg.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND ((classid::bigint << 32) | objid::bigint) = ANY($1::bigint[])",
            [s.names.outbox_lock_id for s in (staging, prod)],
        )
        assert holders == 2
    # The session's own deployment never got the tenant; the two namespaces' objects are gone.
    for s in (settings, staging, prod):
        assert not await db.schema_exists(pg, s.names.tenant_prefix + tenant_id)
