"""The warm pool's adapter on the real PostgreSQL: a claimed tenant is exactly a created one,
claims never collide, a crash mid-claim leaves the pool whole, stale schemas are brought
forward, and nothing that lists tenants sees the pool. No refill leader runs here (the session
worker has the pool off): each test sets the pool up itself."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters.migration_files import load_migrations
from adapters.postgres.warm_pool import PostgresWarmPool
from domain.migrations import plan_migrations
from domain.tenant_ids import quote_ident
from migrations import TENANT_DIR
from producers.warm_pool_refill import WarmPoolRefill
from runtime.settings import Settings
from tenantctl import ops
from tests.support import names as ns
from tests.support import postgres as db
from tests.support.stack import SessionWorker, TenantIds
from tests.support.tenant_catalog import object_oids, tenant_catalog
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack
TEMPLATE = load_migrations(TENANT_DIR)
LATEST = plan_migrations(TEMPLATE, current=0).target


@pytest.fixture
async def warm(
    session_worker: SessionWorker, pg: asyncpg.Connection
) -> AsyncIterator[PostgresWarmPool]:
    # session_worker: its start-up made the control schema, pool table included.
    pool = PostgresWarmPool(ns.CONTROL, ns.tenant_store(), TEMPLATE)
    await pool.drain(pg)
    yield pool
    await pool.drain(pg)


async def _add(pg: asyncpg.Connection, pool: PostgresWarmPool, n: int = 1) -> list[str]:
    names = []
    for _ in range(n):
        async with pg.transaction():
            names.append(await pool.add(pg))
    return names


def _registry_shape(row: asyncpg.Record, name: str) -> dict[str, object]:
    keep = ("schema_name", "role_name", "plan", "status", "schema_version", "erase_archive_id")
    return {k: (row[k].replace(name, "<T>") if isinstance(row[k], str) else row[k]) for k in keep}


async def test_a_claimed_tenant_is_exactly_a_created_one(
    pg: asyncpg.Connection, warm: PostgresWarmPool, tenants: TenantIds
) -> None:
    (pooled,) = await _add(pg, warm)
    pooled_oids = await object_oids(pg, [pooled])
    made, claimed = tenants.new(), tenants.new()
    store = ns.tenant_store()
    async with pg.transaction():
        await store.create(pg, made, "pro", list(plan_migrations(TEMPLATE, 0).steps))
    async with pg.transaction():
        record = await warm.claim(pg, claimed, "pro")
    assert record is not None and record.schema_name == ns.tenant(claimed)
    assert await object_oids(pg, [ns.tenant(claimed)]) == pooled_oids  # renamed, not made
    assert await warm.counts(pg) == {}
    assert not await db.schema_exists(pg, pooled)
    assert not await pg.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", pooled)
    made_row, claimed_row = await db.registry_row(pg, made), await db.registry_row(pg, claimed)
    assert made_row is not None and claimed_row is not None
    assert _registry_shape(claimed_row, ns.tenant(claimed)) == _registry_shape(
        made_row, ns.tenant(made)
    )
    assert await tenant_catalog(pg, ns.tenant(claimed)) == await tenant_catalog(pg, ns.tenant(made))


async def test_a_claimed_tenants_role_reads_and_writes_its_rows_and_nothing_else(
    settings: Settings, pg: asyncpg.Connection, warm: PostgresWarmPool, tenants: TenantIds
) -> None:
    await _add(pg, warm)
    tenant = tenants.new()
    async with pg.transaction():
        assert await warm.claim(pg, tenant, "free") is not None
    schema = role = quote_ident(ns.tenant(tenant))
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        await conn.execute(f"SET ROLE {ns.names().app_role}")
        await conn.execute(f"SET ROLE {role}")
        # The isolation policy names the role: had it kept the pooled name, this would fail.
        await conn.execute(f"INSERT INTO {schema}.users (email) VALUES ('a@b.c')")  # noqa: S608
        assert await conn.fetchval(f"SELECT email FROM {schema}.users") == "a@b.c"  # noqa: S608
        await conn.execute(f"SET ROLE {ns.names().app_role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {schema}.users")  # noqa: S608
    finally:
        await conn.close()


async def test_concurrent_claims_never_take_the_same_schema(
    settings: Settings, pg: asyncpg.Connection, warm: PostgresWarmPool, tenants: TenantIds
) -> None:
    pooled = await _add(pg, warm, 3)
    pooled_oids = await object_oids(pg, pooled)
    claimers = 5
    ids = [tenants.new() for _ in range(claimers)]
    # Every claimer holds its transaction open until all have claimed: each claim runs while
    # the others' rows are locked, as two provisioners' would.
    all_claimed = asyncio.Barrier(claimers)

    async def claim(tenant_id: str) -> bool:
        conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
        try:
            async with conn.transaction():
                await ns.tenant_store().lock_tenant(conn, tenant_id)
                record = await warm.claim(conn, tenant_id, "free")
                await all_claimed.wait()
            return record is not None
        finally:
            await conn.close()

    got = await asyncio.wait_for(asyncio.gather(*(claim(t) for t in ids)), 60)
    assert sorted(got) == [False, False, True, True, True]
    winners = [t for t, ok in zip(ids, got, strict=True) if ok]
    assert await object_oids(pg, [ns.tenant(t) for t in winners]) == pooled_oids
    assert await warm.counts(pg) == {}


async def test_an_empty_pool_claims_nothing(
    pg: asyncpg.Connection, warm: PostgresWarmPool, tenants: TenantIds
) -> None:
    tenant = tenants.new()
    async with pg.transaction():
        assert await warm.claim(pg, tenant, "free") is None
    assert await db.registry_row(pg, tenant) is None
    assert not await db.schema_exists(pg, ns.tenant(tenant))


async def test_a_claim_discards_entries_dropped_by_hand_and_takes_the_oldest_whole_one(
    pg: asyncpg.Connection, warm: PostgresWarmPool, tenants: TenantIds
) -> None:
    no_schema, no_role, whole, newest = await _add(pg, warm, 4)
    await pg.execute(f"DROP SCHEMA {quote_ident(no_schema)} CASCADE")
    await pg.execute(f"DROP SCHEMA {quote_ident(no_role)} CASCADE; DROP ROLE {quote_ident(no_role)}")
    await pg.execute(f"CREATE SCHEMA {quote_ident(no_role)}")  # the schema back, not the role
    whole_oids, newest_oids = await object_oids(pg, [whole]), await object_oids(pg, [newest])
    first, second, third = tenants.new(), tenants.new(), tenants.new()
    async with pg.transaction():
        assert await warm.claim(pg, first, "free") is not None
    assert await object_oids(pg, [ns.tenant(first)]) == whole_oids
    # the broken entries are gone, and what was left of them
    assert await warm.names(pg) == [newest]
    assert not await pg.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", no_schema)
    assert not await db.schema_exists(pg, no_role)
    async with pg.transaction():
        assert await warm.claim(pg, second, "free") is not None
    assert await object_oids(pg, [ns.tenant(second)]) == newest_oids
    async with pg.transaction():
        assert await warm.claim(pg, third, "free") is None
    assert await db.registry_row(pg, third) is None


async def test_a_claim_rolled_back_keeps_the_broken_entries_it_discarded(
    pg: asyncpg.Connection, warm: PostgresWarmPool, tenants: TenantIds
) -> None:
    broken, whole = await _add(pg, warm, 2)
    await pg.execute(f"DROP SCHEMA {quote_ident(broken)} CASCADE")
    tx = pg.transaction()
    await tx.start()
    assert await warm.claim(pg, tenants.new(), "free") is not None
    await tx.rollback()
    assert await warm.names(pg) == [broken, whole]  # the discard is part of the claim


async def test_a_pooled_schema_behind_the_template_is_migrated_before_it_is_handed_out(
    pg: asyncpg.Connection, warm: PostgresWarmPool, tenants: TenantIds
) -> None:
    older = PostgresWarmPool(ns.CONTROL, ns.tenant_store(), TEMPLATE[:-1])
    await _add(pg, older)
    assert await warm.counts(pg) == {LATEST - 1: 1}
    made, claimed = tenants.new(), tenants.new()
    async with pg.transaction():
        await ns.tenant_store().create(pg, made, "free", list(plan_migrations(TEMPLATE, 0).steps))
    async with pg.transaction():
        record = await warm.claim(pg, claimed, "free")
    assert record is not None and record.schema_version == LATEST
    row = await db.registry_row(pg, claimed)
    assert row is not None and row["schema_version"] == LATEST
    assert await tenant_catalog(pg, ns.tenant(claimed)) == await tenant_catalog(pg, ns.tenant(made))


async def test_a_newer_releases_pooled_schema_is_not_claimed_by_an_older_one(
    pg: asyncpg.Connection, warm: PostgresWarmPool, tenants: TenantIds
) -> None:
    await _add(pg, warm)
    older = PostgresWarmPool(ns.CONTROL, ns.tenant_store(), TEMPLATE[:-1])
    tenant = tenants.new()
    async with pg.transaction():
        assert await older.claim(pg, tenant, "free") is None
    assert await warm.counts(pg) == {LATEST: 1}


async def test_the_refill_fills_to_the_size_and_drops_stale_schemas(
    settings: Settings, pg: asyncpg.Connection, warm: PostgresWarmPool
) -> None:
    (stale,) = await _add(pg, PostgresWarmPool(ns.CONTROL, ns.tenant_store(), TEMPLATE[:-1]))
    pool = await asyncpg.create_pool(settings.pg_dsn.get_secret_value(), min_size=1, max_size=2)
    try:
        refill = WarmPoolRefill(settings.model_copy(update={"warm_pool_size": 2}), pool, warm)
        assert await refill.refill_once() == {"create": 2, "discard_stale": 1}
    finally:
        await pool.close()
    assert await warm.counts(pg) == {LATEST: 2}
    assert not await db.schema_exists(pg, stale)
    assert not await pg.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", stale)
    for name in await warm.names(pg):  # every pooled schema is whole
        assert await db.schema_exists(pg, name)
        assert {
            r["tablename"]
            for r in await pg.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", name)
        } >= {"users"}


async def test_a_kill_between_claim_and_commit_leaves_the_pool_as_it_was(
    settings: Settings, pg: asyncpg.Connection, warm: PostgresWarmPool, tenants: TenantIds
) -> None:
    (pooled,) = await _add(pg, warm)
    tenant = tenants.new()
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    pid = conn.get_server_pid()
    txn = conn.transaction()
    await txn.start()
    assert await warm.claim(conn, tenant, "free") is not None
    assert await pg.fetchval("SELECT pg_terminate_backend($1)", pid)
    await wait_until(lambda: _gone(pg, pid), 30, what="the killed provisioner's backend to end")
    conn.terminate()
    assert await warm.names(pg) == [pooled]
    assert await db.schema_exists(pg, pooled)
    assert await pg.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", pooled)
    assert not await db.schema_exists(pg, ns.tenant(tenant))
    assert not await pg.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", ns.tenant(tenant))
    assert await db.registry_row(pg, tenant) is None
    async with pg.transaction():  # and it can be claimed again
        assert await warm.claim(pg, tenant, "free") is not None


async def _gone(pg: asyncpg.Connection, pid: int) -> bool:
    return not await pg.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid)


async def test_tenant_listings_and_metrics_ignore_pooled_schemas(
    settings: Settings, pg: asyncpg.Connection, warm: PostgresWarmPool, tenants: TenantIds
) -> None:
    pooled = await _add(pg, warm, 2)
    tenant = tenants.new()
    async with pg.transaction():
        await ns.tenant_store().create(pg, tenant, "free", list(plan_migrations(TEMPLATE, 0).steps))
    listed = await ops.list_tenants(settings)
    assert tenant in {r["tenant_id"] for r in listed}
    assert not {r["schema_name"] for r in listed} & set(pooled)
    collected = await ns.names().tenant_metrics().collect(pg)
    assert tenant in {r["tenant_id"] for r in collected}
    live = {
        r["tenant_id"]
        for r in await pg.fetch(
            f"SELECT tenant_id FROM {ns.CONTROL}.tenants WHERE status IN ('active', 'suspended')"
        )
    }
    assert {r["tenant_id"] for r in collected} == live  # tenants, and only tenants
    assert await ns.tenant_store().count_live(pg) == len(
        await pg.fetch(f"SELECT 1 FROM {ns.CONTROL}.tenants WHERE status <> 'erased'")
    )
