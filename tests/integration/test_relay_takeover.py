"""The relay's leader promises on real processes: a standby publishes what a SIGKILLed leader
left unsent (a leader whose mark is stuck goes on publishing, and marks nothing), and a crash
between publish and mark republishes the same event id (at-least-once, never a different id).
Needs the only relays and provisioners to be this test's own."""

import functools
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from contracts.envelope import result_event_id
from runtime.settings import Settings
from tests.support import names as ns
from tests.support import postgres as db
from tests.support.kafka import ResultLog, group_members, publish, requested
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess, http_get

pytestmark = pytest.mark.stack

_LEADER_GAUGE = re.compile(rb"^tenant_outbox_relay_leader (\S+)$", re.MULTILINE)


@pytest.fixture
async def only_our_workers(
    session_worker: SessionWorker, settings: Settings, pg: asyncpg.Connection
) -> AsyncIterator[None]:
    """Stop the session worker; fail (naming why) while a process we did not start relays or
    provisions, since it would publish or consume what this test must control."""
    await session_worker.stop()
    try:
        await wait_until(
            lambda: _group_is_empty(settings), 30, what="no member left in tenant-provisioner"
        )
        holder = await _lease_holder(pg, settings)
        assert holder is None, f"a relay this test did not start holds the outbox lease ({holder})"
        yield
    finally:
        if session_worker.current is None:
            await session_worker.start()


async def _group_is_empty(settings: Settings) -> bool:
    _, members = await group_members(settings, topics.PROVISIONER_GROUP)
    return not members


async def _lease_holder(pg: asyncpg.Connection, settings: Settings) -> int | None:
    holder: int | None = await pg.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        " AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid",
        settings.names.outbox_lock_id,
    )
    return holder


async def _leads(worker: WorkerProcess) -> bool:
    _, body = await http_get(worker.port, "/metrics")
    found = _LEADER_GAUGE.search(body)
    assert found is not None, "no tenant_outbox_relay_leader gauge on /metrics"
    return float(found.group(1)) == 1.0


async def test_a_standby_relay_publishes_what_a_killed_leader_left_unsent(
    only_our_workers: None,
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
    log_dir: Path,
) -> None:
    # The leader's mark waits on our row lock for as long as the test needs (the default lock
    # timeout would make it step down after 5 s: on a loaded machine, before the standby is up).
    patient = {"TENANT_PG_LOCK_TIMEOUT_MS": "600000"}
    leader = WorkerProcess(["relay"], log_dir / "takeover-relay-1.log", env=patient)
    standby = WorkerProcess(["relay"], log_dir / "takeover-relay-2.log", env=patient)
    provisioner = WorkerProcess(["provisioner"], log_dir / "takeover-provisioner.log")
    first = requested(tenants.new())
    first_id = result_event_id(first.id, "TenantProvisioned")
    later = [requested(tenants.new()) for _ in range(3)]
    later_ids = [result_event_id(r.id, "TenantProvisioned") for r in later]
    blocker = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        await provisioner.start()
        async with ResultLog(settings) as results:
            await publish(publisher, first)
            await wait_until(functools.partial(db.outbox_row, pg, first_id), 60, what="first row")
            # The leader publishes the first row and then its mark waits on our lock: alive,
            # holding the lease, publishing what comes next, marking nothing.
            tx = blocker.transaction()
            await tx.start()
            await _lock_pending(blocker, first_id)
            await leader.start()
            await wait_until(lambda: _leads(leader), 30, what="the first relay leading")
            await results.first(first.id)
            marking = await wait_until(
                lambda: _blocked_by(pg, blocker), 30, what="the leader's mark waiting on our lock"
            )
            await standby.start()
            assert not await _leads(standby), "two relays lead at once"
            for request in later:
                await publish(publisher, request)
            # Its publishing does not wait for the stuck mark; the rows stay unsent.
            await results.all_of([r.id for r in later])
            for result_id in [first_id, *later_ids]:
                row = await db.outbox_row(pg, result_id)
                assert row is not None and not row["sent"], "marked past a stuck mark"

            assert await leader.kill() == -signal.SIGKILL
            for pid in marking:  # its mark dies with it (see the next test)
                await pg.execute("SELECT pg_terminate_backend($1)", pid)
            await tx.rollback()
            for request in [first, *later]:  # what the leader left unmarked: published again
                await wait_until(
                    lambda r=request: len(results.caused_by(r.id)) >= 2, 60, what="republished"
                )

        assert await _leads(standby), "the standby did not take the lease"
        for request, result_id in zip([first, *later], [first_id, *later_ids], strict=True):
            assert [e.id for e in results.caused_by(request.id)] == [result_id, result_id]
        await wait_until(
            lambda: _all_marked(pg, [first_id, *later_ids]), 30, what="the rows marked sent"
        )
    finally:
        await blocker.close()
        for worker in (leader, standby, provisioner):
            if worker.running:
                await worker.kill()


async def test_a_relay_killed_between_publish_and_mark_republishes_the_same_event_id(
    only_our_workers: None,
    session_worker: SessionWorker,
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
    log_dir: Path,
) -> None:
    provisioner = WorkerProcess(["provisioner"], log_dir / "mark-provisioner.log")
    relay = WorkerProcess(["relay"], log_dir / "mark-relay.log")
    request = requested(tenants.new())
    result_id = result_event_id(request.id, "TenantProvisioned")
    blocker = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        await provisioner.start()
        async with ResultLog(settings) as results:
            await publish(publisher, request)
            await wait_until(lambda: db.outbox_row(pg, result_id), 60, what="committed outbox row")
            assert await provisioner.kill() == -signal.SIGKILL

            # A row lock lets the relay read and publish the row; its mark_sent then waits.
            tx = blocker.transaction()
            await tx.start()
            await _lock_pending(blocker, result_id)
            await relay.start()
            await results.first(request.id)
            marking = await wait_until(
                lambda: _blocked_by(pg, blocker), 30, what="the relay's mark waiting on our lock"
            )
            assert await relay.kill() == -signal.SIGKILL
            # The crash: the mark's transaction dies with its session, never committed. (A
            # backend waiting on a lock notices its client's death only once granted, and would
            # then commit the autocommit UPDATE the dead client had already sent.)
            for pid in marking:
                await pg.execute("SELECT pg_terminate_backend($1)", pid)
            await wait_until(
                lambda: _gone(pg, marking), 30, what="the killed relay's backends gone"
            )
            await tx.rollback()
            row = await db.outbox_row(pg, result_id)
            assert row is not None and not row["sent"], "marked sent despite the crash"

            await session_worker.start()  # a fresh relay republishes the unmarked row
            await wait_until(
                lambda: len(results.caused_by(request.id)) >= 2, 60, what="the republication"
            )
            sentinel = requested(request.subject)  # answered after any further copy
            await publish(publisher, sentinel)
            await results.first(sentinel.id)

        copies = results.caused_by(request.id)
        assert [e.id for e in copies] == [result_id, result_id], "a different id or copy count"
        assert len({e.model_dump_json() for e in copies}) == 1, "the copies differ"
        # Downstream deduplication on the id keeps exactly one result.
        assert len({e.id: e for e in copies}) == 1
        row = await db.outbox_row(pg, result_id)
        assert row is not None and row["sent"]
        assert await db.inbox_count(pg, topics.PROVISIONER_GROUP, request.id) == 1
    finally:
        await blocker.close()
        for worker in (provisioner, relay):
            if worker.running:
                await worker.kill()


async def _lock_pending(blocker: asyncpg.Connection, event_id: str) -> None:
    """Lock the row's pending id: the relay reads and publishes the row, and its mark (the
    delete of that id) waits."""
    await blocker.execute(
        f"SELECT 1 FROM {ns.CONTROL}.outbox_pending WHERE id ="
        f" (SELECT id FROM {ns.CONTROL}.outbox WHERE event_id = $1) FOR UPDATE",
        event_id,
    )


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


async def _all_marked(pg: asyncpg.Connection, event_ids: list[str]) -> bool:
    return not await pg.fetchval(
        f"SELECT count(*) FROM {ns.CONTROL}.outbox_pending p JOIN {ns.CONTROL}.outbox o"
        " ON o.id = p.id WHERE o.event_id = ANY($1::text[])",
        event_ids,
    )
