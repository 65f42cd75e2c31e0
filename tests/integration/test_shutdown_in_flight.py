"""SIGTERM while a provisioning handler is in flight, half-way through its DDL: the worker
either finishes it within the grace period or leaves it uncommitted for redelivery; either way
the tenant ends up with exactly one TenantProvisioned and a complete schema, never half of one.

The handler is held mid-way by an EXCLUSIVE lock on the registry: its role, schema and tables
are created (uncommitted) and its registry INSERT waits."""

import signal
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
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack


@pytest.fixture
async def no_session_worker(
    session_worker: SessionWorker, settings: Settings
) -> AsyncIterator[None]:
    """Only this test's provisioner may take the request; fail, naming why, if another does."""
    await session_worker.stop()
    try:
        await wait_until(
            lambda: _group_is_empty(settings), 30, what="no member left in tenant-provisioner"
        )
        yield
    finally:
        if session_worker.current is None:
            await session_worker.start()


async def _group_is_empty(settings: Settings) -> bool:
    _, members = await group_members(settings, topics.PROVISIONER_GROUP)
    return not members


async def _blocked_by(pg: asyncpg.Connection, blocker: asyncpg.Connection) -> list[int]:
    rows = await pg.fetch(
        "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        blocker.get_server_pid(),
    )
    return [r["pid"] for r in rows]


async def _gone(pg: asyncpg.Connection, pids: list[int]) -> bool:
    return not await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
    )


async def _shape(pg: asyncpg.Connection, schema: str) -> list[tuple[str, str, int]]:
    """Every relation of ``schema`` with its kind and number of policies."""
    rows = await pg.fetch(
        "SELECT c.relname, c.relkind::text AS kind,"
        " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 ORDER BY c.relname",
        schema,
    )
    return [(r["relname"], r["kind"], int(r["policies"])) for r in rows]


@pytest.mark.parametrize("released", ["within_grace", "after_exit"])
async def test_sigterm_mid_provisioning_finishes_it_or_leaves_it_for_redelivery(
    released: str,
    no_session_worker: None,
    session_worker: SessionWorker,
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
    log_dir: Path,
) -> None:
    grace_s = 60 if released == "within_grace" else 2
    worker = WorkerProcess(
        ["provisioner", "relay"],
        log_dir / f"in-flight-{released}.log",
        # The handler must wait on our lock, not give up on it, while the worker stops.
        env={"TENANT_PG_LOCK_TIMEOUT_MS": "600000", "TENANT_SHUTDOWN_GRACE_S": str(grace_s)},
    )
    tenant_id, reference_id = tenants.new(), tenants.new()
    request, reference = requested(tenant_id), requested(reference_id)
    blocker = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        async with ResultLog(settings) as results:
            await worker.start()
            await publish(publisher, reference)  # a tenant provisioned without interference
            await results.first(reference.id)

            tx = blocker.transaction()
            await tx.start()
            await blocker.execute(f"LOCK TABLE {ns.CONTROL}.tenants IN EXCLUSIVE MODE")
            await publish(publisher, request)
            waiting = await wait_until(
                lambda: _blocked_by(pg, blocker), 60, what="the handler waiting on our lock"
            )
            since = worker.log_size()
            worker.signal(signal.SIGTERM)
            await wait_until(
                lambda: '"event": "worker_stopping"' in worker.log_text(since),
                30,
                what="worker_stopping",
            )
            if released == "within_grace":
                await tx.rollback()
                assert await worker.exited(grace_s + 30) == 0, worker.log_tail()
                assert await db.registry_row(pg, tenant_id) is not None, "not finished in grace"
            else:
                await worker.exited(grace_s + 60)  # the grace ran out with the handler waiting
                await tx.rollback()
                # Its transaction dies with its session: nothing of it may be left committed.
                await wait_until(lambda: _gone(pg, waiting), 30, what="its backend gone")
                assert await db.registry_row(pg, tenant_id) is None
                assert not await db.schema_exists(pg, ns.tenant(tenant_id)), "half-done schema"
                assert await db.inbox_count(pg, topics.PROVISIONER_GROUP, request.id) == 0

            await session_worker.start()  # redelivers the request if it was not finished
            await results.first(request.id)
            sentinel = requested(tenant_id)  # answered after any further result of the request
            await publish(publisher, sentinel)
            await results.first(sentinel.id)

        assert [e.type for e in results.caused_by(request.id)] == ["TenantProvisioned"]
        assert await db.inbox_count(pg, topics.PROVISIONER_GROUP, request.id) == 1
        row = await db.registry_row(pg, tenant_id)
        assert row is not None and row["schema_version"] == db.template_version()
        expected = await _shape(pg, ns.tenant(reference_id))
        assert expected, "the reference tenant has no relations"
        assert await _shape(pg, ns.tenant(tenant_id)) == expected
    finally:
        await blocker.close()
        if worker.running:
            await worker.kill()
