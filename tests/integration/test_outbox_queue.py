"""The outbox's queue on the real stack: every staged row is queued for the relay whoever inserts
it, a mark dequeues exactly the ids it is given, retention never prunes a queued row, and the
upgrade that introduced the queue keeps every row the previous release had not yet sent.

Each test runs in a scratch control schema built by the real control migrations, so the session
worker's relay never sees these rows.
"""

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters.postgres.control_schema import ensure_control_schema, migrate_control_schema
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.pool import create_pool
from adapters.postgres.retention import PostgresRetention
from contracts import codec
from contracts.envelope import Envelope
from contracts.events import TenantSuspended
from runtime.settings import Settings
from tests.support.stack import SessionWorker

pytestmark = pytest.mark.stack

QUEUE_VERSION = 15  # control migration 0015_outbox_pending


@pytest.fixture
async def scratch(
    pg: asyncpg.Connection, settings: Settings, session_worker: SessionWorker
) -> AsyncIterator[str]:
    schema = f"outbox_queue_test_{secrets.token_hex(4)}"
    yield schema
    await pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def _control_schema(pg: asyncpg.Connection, settings: Settings, schema: str) -> None:
    names = settings.names
    await ensure_control_schema(pg, schema, names.app_role, api_reader_role=names.api_reader_role)


def _suspended() -> Envelope:
    return codec.envelope_for(
        TenantSuspended(tenant_id=f"queue-{secrets.token_hex(4)}"),
        correlation_id=f"queue-test-{secrets.token_hex(4)}",
    )


async def _pending(pg: asyncpg.Connection, schema: str) -> list[str]:
    return [
        r[0]
        for r in await pg.fetch(
            f"SELECT o.event_id FROM {schema}.outbox_pending p JOIN {schema}.outbox o"
            " ON o.id = p.id ORDER BY p.id"
        )
    ]


async def test_staged_rows_are_queued_and_a_mark_dequeues_only_its_ids(
    pg: asyncpg.Connection, settings: Settings, scratch: str
) -> None:
    await _control_schema(pg, settings, scratch)
    outbox = PostgresOutbox(scratch)
    staged = [_suspended() for _ in range(3)]
    async with pg.transaction():
        await outbox.add_many(pg, staged)
    async with pg.transaction():  # the same result again: one row, queued once
        await outbox.add_many(pg, staged[:1])
    # A row inserted by a statement that knows nothing of the queue (a replica of the previous
    # release, during a rolling deploy) is queued all the same.
    await pg.execute(
        f"INSERT INTO {scratch}.outbox (event_id, topic, key, event_type, payload)"
        " VALUES ('raw', 'tenants.events', 'raw-tenant', 'TenantSuspended', '')"
    )
    everyone = [e.id for e in staged] + ["raw"]
    assert await _pending(pg, scratch) == everyone

    rows = await outbox.unsent(pg, 10)
    assert [r.event_id for r in rows] == everyone
    assert [r.event_id for r in await outbox.unsent(pg, 10, [rows[1].id])] == [
        everyone[0],
        *everyone[2:],
    ]
    assert (await outbox.backlog(pg))[0] == 4

    await outbox.mark_sent(pg, [rows[0].id, rows[2].id])
    assert await _pending(pg, scratch) == [everyone[1], everyone[3]]
    assert [r.event_id for r in await outbox.unsent(pg, 10)] == [everyone[1], everyone[3]]
    assert (await outbox.backlog(pg))[0] == 2

    # Retention takes the published rows (every row is older than 0 s by now) and only them.
    retention = PostgresRetention(scratch)
    assert await retention.prune_batch(pg, "outbox", 0.0, 100) == 2
    left = {r[0] for r in await pg.fetch(f"SELECT event_id FROM {scratch}.outbox")}
    assert left == {everyone[1], everyone[3]}


async def test_the_upgrade_queues_every_row_the_previous_release_left_unsent(
    pg: asyncpg.Connection, settings: Settings, scratch: str
) -> None:
    # The control schema as the previous release left it: every migration before the queue.
    async with pg.transaction():
        await pg.execute(f"CREATE SCHEMA {scratch}")
        await migrate_control_schema(pg, scratch, before=QUEUE_VERSION)
    await pg.execute(
        f"INSERT INTO {scratch}.outbox (event_id, topic, key, event_type, payload, sent_at)"
        " SELECT 'ev-' || i, 'tenants.events', 't', 'TenantSuspended', '',"
        " CASE WHEN i % 3 = 0 THEN NULL ELSE now() END FROM generate_series(1, 9) i"
    )

    await _control_schema(pg, settings, scratch)

    assert await _pending(pg, scratch) == ["ev-3", "ev-6", "ev-9"]
    rows = await PostgresOutbox(scratch).unsent(pg, 10)
    assert [r.event_id for r in rows] == ["ev-3", "ev-6", "ev-9"]
    # A previous release's relay cannot go on marking (or republishing) by the old column.
    with pytest.raises(asyncpg.UndefinedColumnError):
        await pg.fetch(f"SELECT id FROM {scratch}.outbox WHERE sent_at IS NULL")


async def _outbox_rows_read(conn: asyncpg.Connection, schema: str) -> int:
    """Rows of ``schema``'s outbox read so far by this backend and not yet flushed to the
    cumulative statistics (so compared as a difference: they may hold earlier statements')."""
    return await conn.fetchval(
        "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
        " WHERE schemaname = $1 AND relname = 'outbox'",
        schema,
    )


@pytest.mark.parametrize("planned_with", ["a long queue's statistics", "a new outbox"])
async def test_the_relays_reads_cost_what_the_queue_holds_not_what_the_outbox_kept(
    settings: Settings, scratch: str, planned_with: str
) -> None:
    # The outbox keeps published rows for the retention period (days); the queue holds only the
    # unsent ones. Two plans once made every poll read every row the outbox had kept, so the
    # relay slowed as the outbox grew: statistics taken while the queue was long made the
    # planner merge-join the queue with the whole outbox, and a plan cached by the pool's
    # connection while the outbox held its first few rows (a new deployment) scanned it whole
    # until the next ANALYZE. Each is set up here on a connection of the service's own pool.
    pool = await create_pool(settings.pg_pool, max_size=1)
    try:
        async with pool.acquire() as conn:
            await _control_schema(conn, settings, scratch)
            outbox = PostgresOutbox(scratch)
            if planned_with == "a new outbox":
                for table in ("outbox", "outbox_pending"):  # no ANALYZE to replan it meanwhile
                    await conn.execute(
                        f"ALTER TABLE {scratch}.{table} SET (autovacuum_enabled = false)"
                    )
                await outbox.add_many(conn, [_suspended() for _ in range(5)])
                for _ in range(10):  # past the server's five custom plans
                    await outbox.unsent(conn, 1000)
                    await outbox.backlog(conn)
            kept, left = 20_000, 3
            await conn.execute(
                f"INSERT INTO {scratch}.outbox (event_id, topic, key, event_type, payload)"
                " SELECT 'ev-' || i, 'tenants.events', 't', 'TenantSuspended', ''"
                f" FROM generate_series(1, {kept}) i"
            )
            if planned_with == "a long queue's statistics":
                await conn.execute(f"ANALYZE {scratch}.outbox")
                await conn.execute(f"ANALYZE {scratch}.outbox_pending")
            ids = [r[0] for r in await conn.fetch(f"SELECT id FROM {scratch}.outbox ORDER BY id")]
            await outbox.mark_sent(conn, ids[:-left])

            async with conn.transaction():
                before = await _outbox_rows_read(conn, scratch)
                rows = await outbox.unsent(conn, 1000)
                backlog, _ = await outbox.backlog(conn)
                read = await _outbox_rows_read(conn, scratch) - before
    finally:
        await pool.close()
    assert [r.id for r in rows] == ids[-left:]
    assert backlog == left
    # The queued rows and the head's again, and nothing of the published rows.
    assert read <= left + 1, f"the relay's reads fetched {read} outbox rows for {left} unsent"
