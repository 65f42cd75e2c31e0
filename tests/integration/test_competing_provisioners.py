"""Two provisioner processes in one group: every tenant is provisioned exactly once."""

import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from runtime.settings import Settings
from tests.support import names as ns
from tests.support import postgres as db
from tests.support.kafka import ResultLog, group_members, publish, requested
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess, http_get

pytestmark = pytest.mark.stack
TENANTS = 30
DUPLICATED = 10
# Log lines that mean a handler hit trouble: DDL races surface as one of these.
TROUBLE = re.compile(
    r'"level": "(error|critical)"|provisioning_failed|handler_error|database_error|retrying'
    r"|handed_back|dead_lettered|delivery_failed"
)


@pytest.fixture
async def second_provisioner(
    settings: Settings, session_worker: SessionWorker, log_dir: Path
) -> AsyncIterator[WorkerProcess]:
    _, before = await group_members(settings, topics.PROVISIONER_GROUP)
    worker = WorkerProcess(["provisioner"], log_dir / "second-provisioner.log")
    await worker.start()

    async def joined() -> bool:
        state, members = await group_members(settings, topics.PROVISIONER_GROUP)
        # Each process runs TENANT_CONSUMER_CONCURRENCY members; with more members than
        # partitions some stay idle, so look for a settled group that grew, all partitions owned.
        return (
            state == "Stable"
            and len(members) > len(before)
            and sum(members) == settings.kafka_partitions
        )

    await wait_until(joined, 60, what="second provisioner assigned partitions", interval=0.5)
    yield worker
    code = await worker.terminate(settings.shutdown_grace_s + 10)
    assert code == 0, worker.log_tail()


async def test_each_tenant_is_provisioned_once_by_competing_workers(
    second_provisioner: WorkerProcess,
    session_worker: SessionWorker,
    results: ResultLog,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
    pg: asyncpg.Connection,
) -> None:
    workers = [session_worker.process, second_provisioner]
    log_offsets = [w.log_size() for w in workers]
    requests = [requested(tenants.new()) for _ in range(TENANTS)]
    for request in requests:
        await publish(publisher, request)
    duplicates = requests[:DUPLICATED]
    for request in duplicates:
        await publish(publisher, request)
    # Per key, a later request is answered after the duplicates: see test_duplicate_requests.
    sentinels = [requested(r.subject) for r in duplicates]
    for sentinel in sentinels:
        await publish(publisher, sentinel)

    await results.all_of([e.id for e in requests + sentinels], limit_s=90)

    for request in requests:
        assert [e.type for e in results.caused_by(request.id)] == ["TenantProvisioned"]
        assert await db.inbox_count(pg, topics.PROVISIONER_GROUP, request.id) == 1
    active = await pg.fetchval(
        f"SELECT count(*) FROM {ns.CONTROL}.tenants WHERE tenant_id = ANY($1::text[])"
        " AND status = 'active' AND schema_version = $2",
        [r.subject for r in requests],
        db.template_version(),
    )
    assert active == TENANTS
    schemas = await pg.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1::text[])",
        [f"{ns.tenant(r.subject)}" for r in requests],
    )
    assert schemas == TENANTS
    assert await _processed(second_provisioner) > 0, "the second worker took no part"
    for worker, offset in zip(workers, log_offsets, strict=True):
        trouble = [line for line in worker.log_text(offset).splitlines() if TROUBLE.search(line)]
        assert trouble == [], f"{worker.roles} logged trouble:\n" + "\n".join(trouble[:10])


async def _processed(worker: WorkerProcess) -> float:
    _, body = await http_get(worker.port, "/metrics")
    pattern = re.compile(
        r'^tenant_events_total\{group="' + re.escape(ns.names().topics.group(topics.PROVISIONER_GROUP))
        + r'",outcome="processed",type="TenantRequested"\} (\S+)$', re.MULTILINE,
    )
    match = pattern.search(body.decode())
    return float(match.group(1)) if match else 0.0
