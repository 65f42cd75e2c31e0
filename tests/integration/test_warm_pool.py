"""TENANT_WARM_POOL_SIZE on a real worker: its leader fills the pool, TenantRequested is answered
from it with the registry row and TenantProvisioned of a created tenant, an empty pool falls
back to creating, and the leader refills in the background."""

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.migration_files import load_migrations
from adapters.postgres.warm_pool import PostgresWarmPool
from migrations import TENANT_DIR
from runtime.settings import Settings
from tests.support import names as ns
from tests.support import postgres as db
from tests.support.kafka import ResultLog, publish, requested
from tests.support.stack import SessionWorker, TenantIds
from tests.support.tenant_catalog import object_oids, tenant_catalog
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack
SIZE = 2
StartPoolWorker = Callable[..., Awaitable[WorkerProcess]]  # (refill_interval_s, size, connections)


@pytest.fixture
async def pool_worker(
    settings: Settings, session_worker: SessionWorker, pg: asyncpg.Connection, log_dir: Path
) -> AsyncIterator[StartPoolWorker]:
    """Starts, in place of the session worker, a ``provisioner relay`` worker with the pool on."""
    warm = PostgresWarmPool(ns.CONTROL, ns.tenant_store(), load_migrations(TENANT_DIR))
    await session_worker.stop()
    await warm.drain(pg)
    running: list[WorkerProcess] = []

    async def start(
        refill_interval_s: float, size: int = SIZE, connections: int | None = None
    ) -> WorkerProcess:
        for worker in running:
            assert await worker.terminate(settings.shutdown_grace_s + 10) == 0, worker.log_tail()
        running.clear()
        worker = WorkerProcess(
            ["provisioner", "relay"],
            log_dir / f"warm-pool-worker-{refill_interval_s}-{size}-{connections}.log",
            env={
                "TENANT_WARM_POOL_SIZE": str(size),
                "TENANT_WARM_POOL_REFILL_INTERVAL_S": str(refill_interval_s),
            }
            | (
                {}
                if connections is None
                else {"TENANT_WARM_POOL_REFILL_CONNECTIONS": str(connections)}
            ),
        )
        await worker.start()
        running.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in running:
            assert await worker.terminate(settings.shutdown_grace_s + 10) == 0, worker.log_tail()
        await warm.drain(pg)
        await session_worker.start()


async def _pool(pg: asyncpg.Connection) -> dict[int, int]:
    rows = await pg.fetch(
        f"SELECT schema_version, count(*) AS n FROM {ns.CONTROL}.warm_pool GROUP BY 1"
    )
    return {r["schema_version"]: r["n"] for r in rows}


async def _pooled_names(pg: asyncpg.Connection) -> list[str]:
    return [r["name"] for r in await pg.fetch(f"SELECT name FROM {ns.CONTROL}.warm_pool")]


async def test_requests_are_answered_from_the_pool_then_by_creating(
    pool_worker: StartPoolWorker,
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
) -> None:
    # The refill runs once when the worker becomes leader, then not for an hour: the pool
    # empties and stays empty, so the third request must be created.
    await pool_worker(3600)
    full = {db.template_version(): SIZE}
    await wait_until(lambda: _pool_is(pg, full), 60, what=f"the leader to fill the pool: {full}")
    pooled_oids = await object_oids(pg, await _pooled_names(pg))
    assert len(pooled_oids) == SIZE
    ids = [tenants.new() for _ in range(SIZE + 1)]
    async with ResultLog(settings) as results:
        for tenant_id in ids:  # one at a time: the first ones are the pooled ones
            request = requested(tenant_id)
            await publish(publisher, request)
            result = await results.first(request.id)
            assert result.type == "TenantProvisioned"
            assert result.data == {
                "tenant_id": tenant_id,
                "plan": "free",
                "schema_name": ns.tenant(tenant_id),
                "role_name": ns.tenant(tenant_id),
                "schema_version": db.template_version(),
            }
    claimed, created = ids[:SIZE], ids[SIZE]
    assert await object_oids(pg, [ns.tenant(t) for t in claimed]) == pooled_oids
    assert not await object_oids(pg, [ns.tenant(created)]) & pooled_oids
    assert await _pool(pg) == {}
    reference = await tenant_catalog(pg, ns.tenant(created))
    for tenant_id in claimed:
        assert await tenant_catalog(pg, ns.tenant(tenant_id)) == reference
        row = await db.registry_row(pg, tenant_id)
        assert row is not None
        assert (row["status"], row["plan"], row["schema_version"]) == (
            "active",
            "free",
            db.template_version(),
        )


async def test_the_leader_refills_the_pool_in_the_background(
    pool_worker: StartPoolWorker,
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
) -> None:
    await pool_worker(0.2)
    full = {db.template_version(): SIZE}
    await wait_until(lambda: _pool_is(pg, full), 60, what=f"the leader to fill the pool: {full}")
    before = set(await _pooled_names(pg))
    async with ResultLog(settings) as results:
        request = requested(tenants.new())
        await publish(publisher, request)
        assert (await results.first(request.id)).type == "TenantProvisioned"

    async def replaced() -> bool:
        names = set(await _pooled_names(pg))
        return await _pool(pg) == full and len(names - before) == 1

    await wait_until(replaced, 60, what="the claimed schema to be replaced in the pool")


async def _pool_is(pg: asyncpg.Connection, want: dict[int, int]) -> bool:
    return await _pool(pg) == want


async def test_the_leader_makes_pooled_schemas_side_by_side_never_past_the_size(
    pool_worker: StartPoolWorker, pg: asyncpg.Connection
) -> None:
    # 7 on 3 connections: rounds of 3, 3 and 1. A round of 3 at the end would make 9, and the
    # refill would then log discard_excess while trimming back to 7.
    worker = await pool_worker(3600, size=7, connections=3)  # its log is this test's alone
    full = {db.template_version(): 7}
    await wait_until(lambda: _pool_is(pg, full), 60, what=f"the leader to fill the pool: {full}")

    async def logged() -> bool:
        return '"warm_pool_refilled"' in worker.log_text()

    await wait_until(logged, 30, what="the refill to log its round")
    refilled = [line for line in worker.log_text().splitlines() if "warm_pool_refilled" in line]
    assert len(refilled) == 1 and '"create": 7' in refilled[0], refilled
    assert "discard" not in refilled[0]
    rows = await pg.fetch(f"SELECT name, xmin::text AS xid FROM {ns.CONTROL}.warm_pool")
    assert len({r["xid"] for r in rows}) == 7  # each made in a transaction of its own
    reference = await tenant_catalog(pg, rows[0]["name"])
    for row in rows[1:]:  # whole, and alike, whichever connection made it
        assert await tenant_catalog(pg, row["name"]) == reference
