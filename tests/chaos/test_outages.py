"""Each dependency down for a while (PRIVATE stack) while events flow: consumers retry with
backoff, the circuit breaker opens (``tenant_circuit_open{group}`` = 1, ``/readyz`` 503 naming the
dependency or the open circuit) and closes again, and after recovery every event has its one
result and one inbox row.

Outage length: ``TENANT_CHAOS_OUTAGE_S`` (default 10 s here, to keep CI short; a full
30 s outage is ``TENANT_CHAOS_OUTAGE_S=30``).
"""

# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from contracts import codec, topics
from contracts.events import BackupDue, Event, TenantRequested
from tests.chaos.observe import EventsTail, InputPublisher, metric, read_topic, readiness
from tests.chaos.private_stack import PrivateStack
from tests.support import names as ns
from tests.support.backups import add_users
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.chaos
LIMITS = codec.DecodeLimits(max_bytes=1 << 20, max_future_s=300.0, max_age_s=86_400.0)

OUTAGE_S = float(os.environ.get("TENANT_CHAOS_OUTAGE_S", "10"))
SETTLE_S = 120.0


@dataclass
class Fleet:
    stack: PrivateStack
    lifecycle: WorkerProcess  # provisioner + relay
    backup: WorkerProcess
    metrics: WorkerProcess  # scheduler + metrics (MetricsDue every 5 s: it reads Redis)
    requests: dict[str, str] = field(default_factory=dict)  # tenant -> its request's id

    @property
    def all(self) -> list[WorkerProcess]:
        return [self.lifecycle, self.backup, self.metrics]


@pytest.fixture  # fresh workers per outage: one outage's damage must not leak into the next
async def fleet(stack_workers: PrivateStack) -> AsyncIterator[Fleet]:
    s = stack_workers
    workers = [await s.worker(["provisioner", "relay"], "outage-lifecycle"),
               await s.worker(["backup"], "outage-backup"),
               await s.worker(["scheduler", "metrics"], "outage-metrics",
                              {"TENANT_METRICS_INTERVAL": "5"})]
    yield Fleet(s, *workers)
    for w in workers:
        if w.running:
            assert await w.terminate(40) == 0, w.log_tail()


@dataclass
class Observed:
    readyz: list[tuple[int, dict]] = field(default_factory=list)
    circuit: dict[str, float] = field(default_factory=dict)  # group -> max seen

    def failing_checks(self) -> set[str]:
        return {name for status, body in self.readyz if status == 503
                for name, v in body.get("checks", {}).items() if v != "ok"}

    def details(self) -> set[str]:
        return {v for _, body in self.readyz for v in body.get("checks", {}).values() if v != "ok"}


async def observe(fleet: Fleet, obs: Observed, stop: asyncio.Event) -> None:
    groups = (topics.PROVISIONER_GROUP, topics.BACKUP_GROUP, topics.METRICS_GROUP)
    while not stop.is_set():
        for w in fleet.all:
            obs.readyz.append(await readiness(w.port))
            for g in groups:
                v = await metric(w.port, "tenant_circuit_open", {"group": ns.names().topics.group(g)})
                if v is not None:
                    obs.circuit[g] = max(obs.circuit.get(g, 0.0), v)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def traffic(pub: InputPublisher, tail: EventsTail, fleet: Fleet, stop: asyncio.Event,
                  sent: list[str], backups: bool) -> None:
    """A request (and a backup of a tenant known to exist) every half second until stopped."""
    while not stop.is_set():
        tenant = f"out_{secrets.token_hex(4)}"
        events: list[Event] = [TenantRequested(tenant_id=tenant, plan="free")]
        provisioned = [t for t, req in fleet.requests.items() if req in tail.by_cause]
        if provisioned and backups:
            events.append(BackupDue(tenant_id=provisioned[len(sent) % len(provisioned)]))
        for event in events:
            env = codec.envelope_for(event, source="urn:chaos")
            await pub.send(env, limit_s=OUTAGE_S + 120)
            sent.append(env.id)
            if isinstance(event, TenantRequested):
                fleet.requests[tenant] = env.id
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)  # traffic cadence, not synchronisation


async def run_outage(fleet: Fleet, down: object, up: object, *, backups: bool = True
                     ) -> tuple[Observed, list[str], dict]:
    settings = fleet.stack.settings()
    obs, sent = Observed(), []
    stop_traffic, stop_obs = asyncio.Event(), asyncio.Event()
    async with InputPublisher(settings) as pub, EventsTail(settings) as tail:
        flow = asyncio.create_task(traffic(pub, tail, fleet, stop_traffic, sent, backups))
        watcher: asyncio.Task[None] | None = None
        try:
            await wait_until(lambda: len(sent) >= 2, 30, what="traffic")
            await tail.wait_for(set(sent[:2]), 60, "first results before the outage")
            watcher = asyncio.create_task(observe(fleet, obs, stop_obs))
            started = time.monotonic()
            await down()  # type: ignore[operator]
            await asyncio.sleep(OUTAGE_S)  # the outage itself: an injected condition
            await up()  # type: ignore[operator]
            print(f"outage lasted {time.monotonic() - started:.1f}s")
            # recovery: ready again, circuits closed
            for w in fleet.all:
                await _wait_ready(w)
            stop_traffic.set()
            await flow
            await tail.wait_for(set(sent), SETTLE_S, "results after recovery")
            stop_obs.set()
            await watcher
            by_cause = {c: list(tail.by_cause[c]) for c in sent}
        finally:
            # A failed wait must not leave traffic flowing into the next tests (the event loop
            # outlives this test): a leaked publisher once queued hundreds of backups for them.
            for task in (flow, watcher):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
    return obs, sent, by_cause


async def _wait_ready(w: WorkerProcess) -> None:
    last: list[tuple[int, dict]] = []

    async def ready() -> bool:
        last[:] = [await readiness(w.port)]
        return last[0][0] == 200

    try:
        await wait_until(ready, SETTLE_S, what=f"{w.roles} ready again", interval=0.5)
    except AssertionError as e:  # say which check stayed red
        raise AssertionError(f"{e}; last /readyz: {last}") from None


async def assert_nothing_lost(stack: PrivateStack, sent: list[str], by_cause: dict) -> None:
    conn = await stack.connect()
    try:
        rows = {r["event_id"]: r["n"] for r in await conn.fetch(
            f"SELECT event_id, count(*) AS n FROM {ns.CONTROL}.inbox"
            " WHERE event_id = ANY($1::text[]) GROUP BY 1", sent)}
    finally:
        await conn.close()
    assert all(rows.get(e) == 1 for e in sent), {e: rows.get(e) for e in sent if rows.get(e) != 1}
    for e in sent:
        answers = {(s.envelope.type, s.envelope.id) for s in by_cause[e]}
        assert len(answers) == 1, (e, answers)
        (kind, _), = answers
        assert kind in ("TenantProvisioned", "BackupCompleted"), (e, by_cause[e][0].envelope)


def _circuit_opened(worker: WorkerProcess, group: str) -> bool:
    """The worker logged that ``group``'s circuit was open (a durable record, not a sample)."""
    group = ns.names().topics.group(group)  # workers log the session's physical group
    for line in worker.log_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "circuit_open" and entry.get("group") == group:
                return True
    return False


async def _circuit_closed(fleet: Fleet, group: str) -> bool:
    values = [await metric(w.port, "tenant_circuit_open", {"group": ns.names().topics.group(group)})
              for w in fleet.all]
    return all(v in (None, 0.0) for v in values)


async def test_postgres_outage(fleet: Fleet) -> None:
    s = fleet.stack
    # backup traffic is left out here: see test_postgres_outage_during_backup_job
    obs, sent, by_cause = await run_outage(fleet, s.postgres_down, s.postgres_up, backups=False)
    assert "postgres" in obs.failing_checks(), obs.details()
    # The circuit may be open for only a moment: the worker's log records it, a sampled gauge
    # or /readyz could miss it on a loaded machine.
    assert _circuit_opened(fleet.lifecycle, topics.PROVISIONER_GROUP), fleet.lifecycle.log_tail()
    assert '"event": "retrying"' in fleet.lifecycle.log_text()
    await wait_until(lambda: _circuit_closed(fleet, topics.PROVISIONER_GROUP), 60,
                     what="provisioner circuit to close", interval=0.5)
    await assert_nothing_lost(s, sent, by_cause)


async def test_redis_outage(fleet: Fleet) -> None:
    s = fleet.stack
    before = {(r.partition, r.offset) for r in await read_topic(s.settings(), topics.METRICS)}
    obs, sent, by_cause = await run_outage(fleet, s.redis_down, s.redis_up)
    assert "redis" in obs.failing_checks(), obs.details()
    assert _circuit_opened(fleet.metrics, topics.METRICS_GROUP), fleet.metrics.log_tail()
    await wait_until(lambda: _circuit_closed(fleet, topics.METRICS_GROUP), 60,
                     what="metrics circuit to close", interval=0.5)
    await assert_nothing_lost(s, sent, by_cause)
    # every metrics tick emitted meanwhile was collected exactly once
    ticks = [r for r in await read_topic(s.settings(), topics.METRICS)
             if (r.partition, r.offset) not in before]
    ids = [codec.decode(r.value, key=r.key, topic=topics.METRICS, limits=LIMITS).envelope.id
           for r in ticks]
    assert ids, "no MetricsDue during the outage"

    async def collected() -> bool:
        conn = await s.connect()
        try:
            n = await conn.fetchval(f"SELECT count(*) FROM {ns.CONTROL}.inbox"
                                    " WHERE consumer_group = $1 AND event_id = ANY($2::text[])",
                                    topics.METRICS_GROUP, ids)
        finally:
            await conn.close()
        return n == len(set(ids))

    await wait_until(collected, SETTLE_S, what="every MetricsDue of the outage collected",
                     interval=0.5)


async def test_kafka_outage(fleet: Fleet) -> None:
    s = fleet.stack
    _, sent, by_cause = await run_outage(fleet, s.kafka_down, s.kafka_up)
    await assert_nothing_lost(s, sent, by_cause)  # readiness: test_readyz_reports_kafka_down


async def test_readyz_reports_kafka_down(fleet: Fleet) -> None:
    s = fleet.stack
    await s.kafka_down()
    try:
        async def reports() -> bool:
            status, body = await readiness(fleet.lifecycle.port)
            return status == 503 and body.get("checks", {}).get("kafka") != "ok"

        await wait_until(reports, OUTAGE_S, what="/readyz to report kafka down", interval=0.5)
    finally:
        await s.kafka_up()


async def test_backup_target_outage(fleet: Fleet) -> None:
    s = fleet.stack
    size = fleet.backup.log_size()

    async def down() -> None:
        s.target_down()

    async def up() -> None:
        s.target_up()

    _, sent, by_cause = await run_outage(fleet, down, up)
    assert '"event": "job_retry_scheduled"' in fleet.backup.log_text(size)
    await assert_nothing_lost(s, sent, by_cause)


async def test_postgres_outage_during_backup_job(fleet: Fleet) -> None:
    """A backup streaming while PostgreSQL goes away must be retried (or fail with a result),
    and later backups must still run after recovery."""
    s, settings = fleet.stack, fleet.stack.settings()
    slow = await s.worker(["backup"], "outage-slow-backup",
                          {"TENANT_BACKUP_RATE_LIMIT_BYTES": str(32 * 1024),
                           "TENANT_BACKUP_CHUNK_BYTES": "65536"})
    await fleet.backup.terminate(30)  # only the slow worker takes jobs
    t = f"outb_{secrets.token_hex(4)}"
    async with InputPublisher(settings) as pub, EventsTail(settings) as tail:
        req = await pub.send(codec.envelope_for(TenantRequested(tenant_id=t, plan="free")))
        await tail.wait_for({req.envelope.id}, 60, "provisioning")
        conn = await s.connect()
        try:
            await add_users(conn, t, [secrets.token_hex(256) for _ in range(2000)])
        finally:
            await conn.close()
        first = (await pub.send(codec.envelope_for(BackupDue(tenant_id=t)))).envelope

        async def streaming() -> bool:
            c = await s.connect()
            try:
                return bool(await c.fetchval(
                    f"SELECT progress_bytes > 0 FROM {ns.CONTROL}.backup_jobs"
                    " WHERE cause_id = $1 AND status = 'running'", first.id))
            finally:
                await c.close()

        await wait_until(streaming, 60, what="the backup streaming", interval=0.2)
        await s.postgres_down()
        await asyncio.sleep(OUTAGE_S)  # the outage: an injected condition
        await s.postgres_up()
        second = (await pub.send(codec.envelope_for(BackupDue(tenant_id=t)))).envelope
        await tail.wait_for({first.id, second.id}, SETTLE_S, "both backups' answers")
        answers = {e: tail.by_cause[e][0].envelope for e in (first.id, second.id)}
    # an outage is transient: the interrupted backup is retried, not failed as internal_error
    assert [a.type for a in answers.values()] == ["BackupCompleted"] * 2, answers
    assert slow.running
