"""Bounded redelivery on the real stack: a migration that always exceeds its statement timeout
answers TenantMigrationFailed{timeout}, and a tenant blocked on its lock (held here, as a
restore would) does not stop another tenant on the SAME partition; its events run in order
once the lock is released. Runs its own provisioner+relay with short timeouts, alone in the
group (the session worker is stopped meanwhile)."""

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka.partitioner import DefaultPartitioner

from adapters.kafka.producer import KafkaEventPublisher
from adapters.migration_files import load_migrations
from adapters.postgres.tenant_store import tenant_lock_sql
from contracts import codec, topics
from contracts.events import Event, TenantDeactivated, TenantMigrationDue, TenantReactivated
from migrations import TENANT_DIR
from runtime.settings import Settings
from tests.support import names as ns
from tests.support.kafka import ResultLog, group_members, publish
from tests.support.postgres import drop_tenants
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack
TIMEOUT_S = 90.0
ENV = {
    "TENANT_MIGRATION_STATEMENT_TIMEOUT_MS": "300",
    "TENANT_MIGRATION_LOCK_TIMEOUT_MS": "60000",  # the statement timeout fires first
    "TENANT_PG_LOCK_TIMEOUT_MS": "300",  # a wait on a held tenant lock fails fast (transient)
    "TENANT_RETRY_ATTEMPTS": "2",
    "TENANT_RETRY_BASE_DELAY_S": "0.05",
    "TENANT_RETRY_MAX_DELAY_S": "0.5",
    "TENANT_PARKED_POLL_S": "0.2",
    "TENANT_PARKED_MAX_DELAY_S": "0.5",
    "TENANT_REDELIVERY_MAX_ATTEMPTS": "100000",
}


@pytest.fixture
async def own_worker(
    session_worker: SessionWorker, settings: Settings, log_dir: Path
) -> AsyncIterator[WorkerProcess]:
    await session_worker.stop()
    worker = WorkerProcess(["provisioner", "relay"], log_dir / "bounded-redelivery.log", ENV)
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


async def _send(publisher: KafkaEventPublisher, event: Event, tenant_id: str) -> str:
    envelope = codec.envelope_for(event, source="urn:tests")
    assert envelope.subject == tenant_id
    await publish(publisher, envelope)
    return envelope.id


async def _create(pg: asyncpg.Connection, tenant_id: str, up_to: int | None = None) -> None:
    steps = [m for m in load_migrations(TENANT_DIR) if up_to is None or m.version <= up_to]
    async with pg.transaction():
        await ns.tenant_store().create(
            pg, tenant_id, "free", steps
        )


async def test_a_migration_that_always_times_out_answers_failed_timeout(
    own_worker: WorkerProcess, settings: Settings, pg: asyncpg.Connection,
    publisher: KafkaEventPublisher, tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await _create(pg, tenant_id, up_to=1)
    holder = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        # Migration 0002 alters documents; a reader's lock makes it outlast its statement
        # timeout every time (its lock timeout is longer), as a too-slow migration would.
        tx = holder.transaction()
        await tx.start()
        await holder.execute(f'LOCK TABLE "{ns.tenant(tenant_id)}".documents IN ACCESS SHARE MODE')
        async with ResultLog(settings) as results:
            cause = await _send(publisher, TenantMigrationDue(
                tenant_id=tenant_id, target_version=2, rollout_id=f"test-{secrets.token_hex(3)}"
            ), tenant_id)
            result = await results.first(cause, TIMEOUT_S)
        await tx.rollback()
    finally:
        await holder.close()

    try:
        assert result.type == "TenantMigrationFailed", result
        assert result.data["reason"] == "timeout" and result.data["version"] == 2
        assert await pg.fetchval(
            f"SELECT schema_version FROM {ns.CONTROL}.tenants WHERE tenant_id = $1", tenant_id
        ) == 1
    finally:
        # Left at version 1, it would join the session's later rollouts (one registry per run).
        await drop_tenants(pg, [tenant_id])


def _same_partition(tenants: TenantIds, partitions: int) -> tuple[str, str]:
    partitioner, every = DefaultPartitioner(), list(range(partitions))

    def partition(tenant_id: str) -> int:
        return int(partitioner(topics.partition_key(tenant_id), every, every))

    blocked = tenants.new()
    while partition(other := f"t_{secrets.token_hex(4)}") != partition(blocked):
        pass
    return blocked, tenants.track(other)


async def test_a_tenant_waiting_on_its_lock_does_not_stop_its_partition_and_keeps_order(
    own_worker: WorkerProcess, settings: Settings, pg: asyncpg.Connection,
    publisher: KafkaEventPublisher, tenants: TenantIds,
) -> None:
    partitions = len(await publisher.partitions_for(topics.LIFECYCLE))
    blocked, other = _same_partition(tenants, partitions)
    for tenant_id in (blocked, other):
        await _create(pg, tenant_id)
    holder = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        async with ResultLog(settings) as results:
            tx = holder.transaction()
            await tx.start()
            await holder.execute(tenant_lock_sql(blocked))  # as a restore holds it
            first = await _send(publisher, TenantDeactivated(tenant_id=blocked), blocked)
            second = await _send(publisher, TenantReactivated(tenant_id=blocked), blocked)
            served = await _send(publisher, TenantDeactivated(tenant_id=other), other)

            assert (await results.first(served, TIMEOUT_S)).type == "TenantSuspended"
            assert results.caused_by(first) == [] and results.caused_by(second) == []
            parked = await pg.fetch(
                f"SELECT event_id, status FROM {ns.CONTROL}.parked_events"
                " WHERE tenant_id = $1 ORDER BY seq", blocked)
            assert [(r["event_id"], r["status"]) for r in parked] == [
                (first, "parked"), (second, "parked")]

            await tx.commit()  # the "restore" ends
            answers = await results.all_of([first, second], TIMEOUT_S)
            order = [e.causationid for e in results.seen if e.causationid in (first, second)]
    finally:
        await holder.close()

    assert answers[first].type == "TenantSuspended" and answers[second].type == "TenantResumed"
    assert order == [first, second]
    assert await pg.fetchval(
        f"SELECT status FROM {ns.CONTROL}.tenants WHERE tenant_id = $1", blocked) == "active"
    assert await pg.fetchval(
        f"SELECT array_agg(status ORDER BY seq) FROM {ns.CONTROL}.parked_events"
        " WHERE tenant_id = $1", blocked) == ["done", "done"]
