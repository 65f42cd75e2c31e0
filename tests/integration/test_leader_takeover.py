"""The relay on the real stack: a leader whose connection is cut silently (no FIN) is
replaced by a standby, which publishes; the lock session's own check; and a batch published
while the last one is still being marked sent, in the outbox's order, each row once.

The relays here drain a scratch outbox under their own lock id, so the session worker's relay
neither helps nor competes.
"""

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.leader_lock import PostgresLeaderLock
from adapters.postgres.outbox import PostgresOutbox
from contracts import codec
from contracts.envelope import Envelope
from contracts.events import TenantSuspended
from producers.outbox_relay import OutboxRelay
from runtime.settings import Settings
from tests.support.kafka import ResultLog
from tests.support.stack import SessionWorker
from tests.support.tcp_gate import TcpGate
from tests.support.waiting import wait_until
from tests.support.workers import free_port

pytestmark = pytest.mark.stack

SESSION_TIMEOUT_S = 3
POLL_S = 0.2
# What the README promises: session timeout + standby poll; plus a margin for a loaded machine.
TAKEOVER_BOUND_S = SESSION_TIMEOUT_S + POLL_S
MARGIN_S = 20


def _via(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"{netloc[0]}@127.0.0.1:{port}" if len(netloc) == 2 else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=host))


@dataclass
class Scratch:
    schema: str
    outbox: PostgresOutbox


@pytest.fixture
async def scratch(
    pg: asyncpg.Connection, settings: Settings, session_worker: SessionWorker
) -> AsyncIterator[Scratch]:
    """A control schema of our own, built by the real control migrations."""
    schema = f"leader_test_{secrets.token_hex(4)}"
    names = settings.names
    await ensure_control_schema(pg, schema, names.app_role, api_reader_role=names.api_reader_role)
    yield Scratch(schema, PostgresOutbox(schema))
    await pg.execute(f"DROP SCHEMA {schema} CASCADE")


def _relay_settings(settings: Settings, schema: str, lock_id: int, dsn: str) -> Settings:
    return settings.model_copy(
        update={
            "pg_dsn": type(settings.pg_dsn)(dsn),
            "control_schema": schema,
            "outbox_lock_id": lock_id,
            "outbox_poll_interval_s": POLL_S,
            "leader_session_timeout_s": SESSION_TIMEOUT_S,
        }
    )


async def _stage(pg: asyncpg.Connection, outbox: PostgresOutbox) -> str:
    envelope = codec.envelope_for(
        TenantSuspended(tenant_id=f"leader-{secrets.token_hex(4)}"),
        correlation_id=f"leader-test-{secrets.token_hex(4)}",
    )
    async with pg.transaction():
        await outbox.add(pg, envelope)
    return envelope.id


async def _sent(pg: asyncpg.Connection, schema: str, event_id: str) -> bool:
    sent = await pg.fetchval(
        f"SELECT NOT EXISTS (SELECT 1 FROM {schema}.outbox_pending p WHERE p.id = o.id)"
        f" FROM {schema}.outbox o WHERE o.event_id = $1",
        event_id,
    )
    return sent is True  # None: no such row


async def test_silently_cut_relay_leader_is_replaced_by_a_standby_that_publishes(
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    scratch: Scratch,
) -> None:
    dsn = settings.pg_dsn.get_secret_value()
    upstream = urlsplit(dsn)
    gate = TcpGate(free_port(), (upstream.hostname or "127.0.0.1", upstream.port or 5432))
    await gate.open()
    lock_id = 7_390_000 + secrets.randbelow(10_000)
    cut_settings = _relay_settings(settings, scratch.schema, lock_id, _via(dsn, gate.port))
    pool_a = await asyncpg.create_pool(cut_settings.pg_dsn.get_secret_value(), min_size=1)
    pool_b = await asyncpg.create_pool(dsn, min_size=1)
    a = OutboxRelay(cut_settings, pool_a, scratch.outbox, publisher)
    b = OutboxRelay(
        _relay_settings(settings, scratch.schema, lock_id, dsn), pool_b, scratch.outbox, publisher
    )
    tasks = [asyncio.create_task(a.run())]
    try:
        async with ResultLog(settings) as results:
            await wait_until(lambda: a.is_leader, 30, what="relay A leading")
            tasks.append(asyncio.create_task(b.run()))
            first = await _stage(pg, scratch.outbox)
            await wait_until(lambda: _sent(pg, scratch.schema, first), 30, what="A publishing")
            assert not b.is_leader

            await gate.cut_silently()
            second = await _stage(pg, scratch.outbox)
            await wait_until(
                lambda: b.is_leader, TAKEOVER_BOUND_S + MARGIN_S, what="standby B leading"
            )
            await wait_until(lambda: _sent(pg, scratch.schema, second), 30, what="B publishing")
            await wait_until(
                lambda: any(e.id == second for e in results.seen), 30, what="B's record on Kafka"
            )
            # The cut leader found out by itself (its check timed out) and stopped leading.
            await wait_until(lambda: not a.is_leader, 30, what="A stepping down")
            assert b.election.terms == 1 and a.election.terms == 1
    finally:
        a.stop()
        b.stop()
        for task in tasks:
            task.cancel()
        # Bounded: a relay stuck on its silent connection must not hang the test (the gate's
        # close below ends those connections).
        await asyncio.wait(tasks, timeout=10)
        pool_a.terminate()
        await gate.close()
        await asyncio.wait_for(pool_b.close(), 10)


async def test_lock_session_reports_a_lost_lock_and_frees_it_for_another(
    settings: Settings, pg: asyncpg.Connection
) -> None:
    lock_id = 7_380_000 + secrets.randbelow(10_000)

    def lock() -> PostgresLeaderLock:
        return PostgresLeaderLock(
            settings.pg_dsn.get_secret_value(),
            lock_id,
            session_timeout_s=SESSION_TIMEOUT_S,
            application_name="leader-lock-test",
            statement_timeout_ms=5_000,
        )

    first, second = lock(), lock()
    try:
        assert await first.acquire() and await first.holds()
        assert not await second.acquire()
        async with first.session() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        await pg.execute("SELECT pg_terminate_backend($1)", pid)
        assert not await first.holds()
        assert await wait_until(second.acquire, 10, what="second session taking the lock")
        assert await second.holds()
    finally:
        await first.release()
        await second.release()


class HeldMarks(PostgresOutbox):
    """The scratch outbox, whose marks wait for ``release``."""

    def __init__(self, schema: str) -> None:
        super().__init__(schema)
        self.release, self.marking = asyncio.Event(), asyncio.Event()

    async def mark_sent(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        self.marking.set()
        await self.release.wait()
        await super().mark_sent(conn, ids)


async def test_next_batch_goes_out_while_the_last_is_marked_in_order_each_row_once(
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    scratch: Scratch,
) -> None:
    """One tenant's rows 1-7, where row 3 commits only after the first batch (1, 2, 4, 5, 6) was
    read: the second batch goes out while the first is still being marked, leaves the first
    out, and publishes 3 before 7 (3 is among the first batch's ids, yet not in it)."""
    outbox = HeldMarks(scratch.schema)
    tenant_id = f"pipeline-{secrets.token_hex(4)}"

    def envelope() -> Envelope:
        return codec.envelope_for(TenantSuspended(tenant_id=tenant_id), correlation_id=tenant_id)

    async def stage(conn: asyncpg.Connection) -> str:
        e = envelope()
        await outbox.add(conn, e)
        return e.id

    dsn = settings.pg_dsn.get_secret_value()
    relay_settings = _relay_settings(
        settings, scratch.schema, 7_370_000 + secrets.randbelow(10_000), dsn
    ).model_copy(update={"outbox_batch_size": 5})
    pool = await asyncpg.create_pool(dsn, min_size=1)
    late = await asyncpg.connect(dsn)
    relay = OutboxRelay(relay_settings, pool, outbox, publisher)
    second: asyncio.Task[int] | None = None
    try:
        async with ResultLog(settings) as results:
            ids = [await stage(pg) for _ in range(2)]
            async with late.transaction():
                ids.append(await stage(late))  # row 3: its id is taken now, its commit later
                ids += [await stage(pg) for _ in range(4)]  # rows 4-7, committed
                assert await relay.drain_once() == 5  # rows 1, 2, 4, 5, 6
                await asyncio.wait_for(outbox.marking.wait(), 30)
            # Row 3 has committed; rows 1, 2, 4, 5, 6 are still being marked.
            second = asyncio.create_task(relay.drain_once())

            def ours() -> list[str]:
                return [e.id for e in results.seen if e.id in ids]

            await wait_until(lambda: len(ours()) == 7, 30, what="the second batch on Kafka")
            assert not await _sent(pg, scratch.schema, ids[0])  # still being marked
            assert ours() == [ids[i] for i in (0, 1, 3, 4, 5, 2, 6)], "each once, 3 before 7"
            outbox.release.set()
            assert await asyncio.wait_for(second, 30) == 2
            await asyncio.wait_for(relay.flush(), 30)
            assert [await _sent(pg, scratch.schema, i) for i in ids] == [True] * 7
            assert await relay.drain_once() == 0
            await relay.flush()
            assert len(ours()) == 7  # nothing published twice
    finally:
        outbox.release.set()
        if second is not None:
            second.cancel()
        await late.close()
        await asyncio.wait_for(pool.close(), 10)
