"""Emits MetricsDue every ``TENANT_METRICS_INTERVAL`` seconds and BackupDue per active or suspended
tenant on its plan's schedule, from exactly one leader at a time.

Leadership: ``producers.leader``, the loop the outbox relay also runs, with a session-level
advisory lock (``TENANT_SCHEDULER_LOCK_ID``) on a dedicated connection rather than a lease row.
Postgres releases the lock the moment the holder's session ends, so there is no lease length to
tune against clock skew or pauses, and every state read/write runs on that same session: a leader
that lost its session cannot advance the state (a natural fence). Kafka writes are not fenced, and
need not be: tick ids derive from (kind, subject, window), so whatever a deposed leader still
sends repeats an id the consumers' inbox drops.

Takeover bound: standbys try the lock every ``scheduler_poll_s``. A leader process that dies
(crash, SIGKILL, OOM) closes its socket, its backend exits and a standby leads within
``scheduler_poll_s`` and emits any due window in its first round. A leader host that vanishes
without closing the socket, or cut off from it, loses its session after about
``leader_session_timeout_s`` (idle-session timeout and TCP keepalives): bound = that + poll. The
state remembers the last window emitted per (kind, subject), so a takeover or a restart emits what
was missed, per ``TENANT_SCHEDULER_CATCH_UP`` (``latest``, or ``all`` capped at ``..._MAX``,
newest first).

A tenant without state is due from its creation (first deployment: one catch-up round).
"""

import asyncio
import contextlib
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import structlog

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.scheduler_state import PostgresSchedulerState
from contracts import codec
from contracts.events import ALL_TENANTS, BackupDue, Event, MetricsDue
from contracts.publish import record_of
from domain.schedules import Every, Schedule, due_windows, next_window, parse_schedule, tick_id
from producers.leader import leader_election
from runtime import metrics
from runtime.settings import Settings

log = structlog.get_logger(__name__)

METRICS_KIND, BACKUP_KIND = MetricsDue.__name__, BackupDue.__name__
Tick = tuple[str, str, datetime, Event]  # kind, subject, window start, event


class Scheduler:
    def __init__(self, settings: Settings, publisher: KafkaEventPublisher) -> None:
        self._s = settings
        self._publisher = publisher
        self._state = PostgresSchedulerState(settings.names.control_schema)
        self._metrics_schedule = Every(settings.metrics_interval)
        self._plans: dict[str, Schedule] = {
            plan: parse_schedule(expr) for plan, expr in settings.backup_schedules.items()
        }
        self._default = parse_schedule(settings.backup_default_schedule)
        self._source = f"{settings.source}/scheduler"
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self.election = leader_election(
            settings,
            "scheduler",
            settings.names.scheduler_lock_id,
            self._emit_while_leader,
            poll_s=settings.scheduler_poll_s,
            gauge=metrics.SCHEDULER_LEADER,
        )
        # State is read and written on the lock's own session: a deposed leader cannot advance it.
        self._session = self.election.lock.session

    @property
    def is_leader(self) -> bool:
        return self.election.is_leader

    async def run(self) -> None:
        """Until stop(): wait for the lock, then emit due ticks while holding it."""
        await self.election.run()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        self.election.stop()

    async def _emit_while_leader(self) -> None:
        next_due: datetime | None = None
        while not self._stopping.is_set():
            now = datetime.now(UTC)
            if next_due is None or now >= next_due:
                next_due = await self._round(now)
            wait = (next_due - datetime.now(UTC)).total_seconds()
            await self._sleep(max(0.0, min(self._s.scheduler_poll_s, wait)))

    async def _round(self, now: datetime) -> datetime:
        """Emit every due tick; returns when the next one falls due."""
        started = time.perf_counter()
        ticks = await self._due(now)
        batch = self._s.scheduler_batch_size
        for start in range(0, len(ticks), batch):
            await self._emit(ticks[start : start + batch])
        metrics.SCHEDULER_ROUND_SECONDS.observe(time.perf_counter() - started)
        if ticks:
            log.info("scheduler_round", ticks=len(ticks), seconds=time.perf_counter() - started)
        upcoming = [
            w
            for s in (self._metrics_schedule, self._default, *self._plans.values())
            if (w := next_window(s, now)) is not None
        ]
        return min(upcoming, default=now + timedelta(seconds=self._s.metrics_interval))

    async def _due(self, now: datetime) -> list[Tick]:
        policy, cap = self._s.scheduler_catch_up, self._s.scheduler_catch_up_max
        async with self._session() as conn:
            last_metrics = await self._state.last_window(conn, METRICS_KIND, ALL_TENANTS)
            tenants = await self._state.scheduled_tenants(conn, BACKUP_KIND)
        since = last_metrics or now - timedelta(seconds=self._s.metrics_interval)
        ticks: list[Tick] = [
            (
                METRICS_KIND,
                ALL_TENANTS,
                w,
                MetricsDue(window_start=w, interval_seconds=self._s.metrics_interval),
            )
            for w in due_windows(self._metrics_schedule, since, now, policy, cap)
        ]
        windows: dict[tuple[str, datetime], list[datetime]] = {}
        for tenant in tenants:
            key = (tenant.plan, tenant.last_window or tenant.created_at)
            if key not in windows:
                schedule = self._plans.get(key[0], self._default)
                windows[key] = due_windows(schedule, key[1], now, policy, cap)
            ticks += [
                (
                    BACKUP_KIND,
                    tenant.tenant_id,
                    w,
                    BackupDue(tenant_id=tenant.tenant_id, window_start=w, trigger="scheduled"),
                )
                for w in windows[key]
            ]
        return ticks

    async def _emit(self, ticks: list[Tick]) -> None:
        """Publish, then remember: a crash in between re-sends the same ids, never skips one."""
        envelopes = [
            codec.envelope_for(event, event_id=tick_id(kind, subject, window), source=self._source)
            for kind, subject, window, event in ticks
        ]
        await self._publisher.publish_many([record_of(e).message for e in envelopes])
        latest: dict[tuple[str, str], datetime] = {}
        counts: dict[str, int] = defaultdict(int)
        for kind, subject, window, _ in ticks:
            latest[(kind, subject)] = max(window, latest.get((kind, subject), window))
            counts[kind] += 1
        async with self._session() as conn:
            await self._state.remember(conn, latest)
        for kind, n in counts.items():
            metrics.SCHEDULER_TICKS.labels(kind).inc(n)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()
