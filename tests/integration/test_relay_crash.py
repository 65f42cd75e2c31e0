"""A result committed to the outbox survives the provisioner's crash and is published once by
the next relay. Needs the only relay and the only provisioners to be this test's own."""

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.kafka.event_reader import topic_partitions
from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from contracts.envelope import result_event_id
from runtime.settings import Settings
from tests.support import postgres as db
from tests.support.kafka import ResultLog, group_members, publish, requested
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack


@pytest.fixture
async def no_other_workers(
    session_worker: SessionWorker, settings: Settings, pg: asyncpg.Connection
) -> AsyncIterator[None]:
    """Stop the session worker. In the session's own namespace nothing else consumes or relays;
    if something does (a leaked worker), the test fails saying so."""
    await session_worker.stop()
    try:
        await wait_until(
            lambda: _group_is_empty(settings), 15, interval=0.5,
            what="no member left in this session's provisioner group",
        )
        holder = await pg.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid",
            settings.names.outbox_lock_id,
        )
        assert holder is None, f"a relay this test did not start holds our outbox lease (pid {holder})"
        yield
    finally:
        if session_worker.current is None:  # the test may have restarted it already
            await session_worker.start()


async def _group_is_empty(settings: Settings) -> bool:
    _, members = await group_members(settings, topics.PROVISIONER_GROUP)
    return not members


async def _end_offsets(settings: Settings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        assigned = await topic_partitions(consumer, settings.names.topics.events)
        return dict(await consumer.end_offsets(assigned))
    finally:
        await consumer.stop()


async def test_committed_result_is_published_once_after_provisioner_crash(
    no_other_workers: None,
    session_worker: SessionWorker,
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
    log_dir: Path,
) -> None:
    provisioner = WorkerProcess(["provisioner"], log_dir / "crash-provisioner.log")
    await provisioner.start()
    tenant_id = tenants.new()
    request = requested(tenant_id)
    result_id = result_event_id(request.id, "TenantProvisioned")
    try:
        async with ResultLog(settings) as results:
            before = await _end_offsets(settings)
            await publish(publisher, request)
            row = await wait_until(
                lambda: db.outbox_row(pg, result_id), 60, what="committed outbox row"
            )
            assert not row["sent"]
            assert await provisioner.kill() == -signal.SIGKILL

            assert await _end_offsets(settings) == before, "published with no relay running"
            assert results.caused_by(request.id) == []
            assert await db.registry_row(pg, tenant_id) is not None  # the effect committed

            await session_worker.start()  # brings the relay back
            published = await results.first(request.id)
            # A later request on the same key is answered after any republication of the first.
            sentinel = requested(tenant_id)
            await publish(publisher, sentinel)
            await results.first(sentinel.id)

            assert published.id == result_id and published.type == "TenantProvisioned"
            assert [e.id for e in results.caused_by(request.id)] == [result_id]
            assert await db.inbox_count(pg, topics.PROVISIONER_GROUP, request.id) == 1
    finally:
        if provisioner.running:
            await provisioner.kill()
