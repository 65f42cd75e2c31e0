"""Emits MetricsDue every ``TENANT_METRICS_INTERVAL`` seconds and BackupDue per active or
suspended tenant on its plan's schedule, from exactly one leader at a time.

Leadership: a session-level advisory lock (``TENANT_SCHEDULER_LOCK_ID``) held on a dedicated
connection, as the outbox relay does, rather than a lease row. Postgres releases the lock the
moment the holder's session ends, so there is no lease length to tune against clock skew or
pauses, and every state read/write runs on that same session: a leader that lost its session
cannot advance the state (a natural fence). Kafka writes are not fenced, and need not be: tick
ids derive from (kind, subject, window), so whatever a deposed leader still sends repeats an id
the consumers' inbox drops.

Takeover bound: standbys try the lock every ``scheduler_poll_s``. A leader process that dies
(crash, SIGKILL, OOM) closes its socket, its backend exits and a standby leads within
``scheduler_poll_s`` and emits any due window in its first round. A leader host that vanishes
without closing the socket is noticed by server-side TCP keepalives after about
``scheduler_keepalive_s``: bound = keepalive + poll. The state remembers the last window
emitted per (kind, subject), so a takeover or a restart emits what was missed, per
``TENANT_SCHEDULER_CATCH_UP`` (``latest``, or ``all`` capped at ``..._MAX``, newest first).

A tenant without state is due from its creation (first deployment: one catch-up round).
"""

# SQL names are quote_ident()-ed from settings, never from input; values are bind parameters.
# ruff: noqa: S608

import asyncio
import contextlib
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.errors import is_transient
from contracts import codec, topics
from contracts.events import ALL_TENANTS, BackupDue, Event, MetricsDue
from domain.errors import TransientError
from domain.schedules import Every, Schedule, due_windows, next_window, parse_schedule, tick_id
from domain.tenant_ids import quote_ident
from runtime import metrics
from runtime.settings import Settings

log = structlog.get_logger(__name__)

METRICS_KIND, BACKUP_KIND = MetricsDue.__name__, BackupDue.__name__
Tick = tuple[str, str, datetime, Event]  # kind, subject, window start, event


class Scheduler:
    def __init__(self, settings: Settings, publisher: KafkaEventPublisher) -> None:
        self._s = settings
        self._publisher = publisher
        control = quote_ident(settings.names.control_schema)
        self._state, self._tenants = f"{control}.scheduler_state", f"{control}.tenants"
        self._metrics_schedule = Every(settings.metrics_interval)
        self._plans: dict[str, Schedule] = {
            plan: parse_schedule(expr) for plan, expr in settings.backup_schedules.items()
        }
        self._default = parse_schedule(settings.backup_default_schedule)
        self._source = f"{settings.source}/scheduler"
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self.is_leader = False

    async def run(self) -> None:
        """Until stop(): wait for the lock, then emit due ticks while holding it."""
        while not self._stopping.is_set():
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # lost session, broker down: step back and try again
                if isinstance(e, TransientError) or is_transient(e):
                    log.warning("scheduler_interrupted", error=str(e))
                else:
                    log.exception("scheduler_error")
            self._set_leader(False)
            await self._sleep(self._s.scheduler_poll_s)

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    async def _lead(self) -> None:
        keepalive = self._s.scheduler_keepalive_s
        conn: asyncpg.Connection = await asyncpg.connect(
            self._s.pg_dsn.get_secret_value(),
            server_settings={
                "application_name": "tenant-service-scheduler",
                "statement_timeout": str(self._s.pg_statement_timeout_ms),
                # idle + count x interval ~= keepalive: a vanished leader frees the lock
                "tcp_keepalives_idle": str(max(1, keepalive // 2)),
                "tcp_keepalives_interval": str(max(1, keepalive // 6)),
                "tcp_keepalives_count": "3",
            },
        )
        try:
            while not self._stopping.is_set():
                lock_id = self._s.names.scheduler_lock_id
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_id):
                    break
                await self._sleep(self._s.scheduler_poll_s)  # standby
            else:
                return
            self._set_leader(True)
            log.info("scheduler_leader", lock_id=self._s.names.scheduler_lock_id)
            next_due: datetime | None = None
            while not self._stopping.is_set():
                now = datetime.now(UTC)
                if next_due is None or now >= next_due:
                    next_due = await self._round(conn, now)
                else:
                    await conn.fetchval("SELECT 1")  # the session is the lease: is it alive?
                wait = (next_due - datetime.now(UTC)).total_seconds()
                await self._sleep(max(0.0, min(self._s.scheduler_poll_s, wait)))
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def _round(self, conn: asyncpg.Connection, now: datetime) -> datetime:
        """Emit every due tick; returns when the next one falls due."""
        started = time.perf_counter()
        ticks = await self._due(conn, now)
        batch = self._s.scheduler_batch_size
        for start in range(0, len(ticks), batch):
            await self._emit(conn, ticks[start : start + batch])
        metrics.SCHEDULER_ROUND_SECONDS.observe(time.perf_counter() - started)
        if ticks:
            log.info("scheduler_round", ticks=len(ticks), seconds=time.perf_counter() - started)
        upcoming = [
            w
            for s in (self._metrics_schedule, self._default, *self._plans.values())
            if (w := next_window(s, now)) is not None
        ]
        return min(upcoming, default=now + timedelta(seconds=self._s.metrics_interval))

    async def _due(self, conn: asyncpg.Connection, now: datetime) -> list[Tick]:
        policy, cap = self._s.scheduler_catch_up, self._s.scheduler_catch_up_max
        last_metrics = await conn.fetchval(
            f"SELECT last_window FROM {self._state} WHERE kind = $1 AND subject = $2",
            METRICS_KIND,
            ALL_TENANTS,
        )
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
        rows = await conn.fetch(
            f"SELECT t.tenant_id, t.plan, t.created_at, s.last_window FROM {self._tenants} t"
            f" LEFT JOIN {self._state} s ON s.kind = $1 AND s.subject = t.tenant_id"
            " WHERE t.status IN ('active', 'suspended') ORDER BY t.tenant_id",
            BACKUP_KIND,
        )
        windows: dict[tuple[str, datetime], list[datetime]] = {}
        for row in rows:
            key = (row["plan"], row["last_window"] or row["created_at"])
            if key not in windows:
                schedule = self._plans.get(key[0], self._default)
                windows[key] = due_windows(schedule, key[1], now, policy, cap)
            ticks += [
                (
                    BACKUP_KIND,
                    row["tenant_id"],
                    w,
                    BackupDue(tenant_id=row["tenant_id"], window_start=w, trigger="scheduled"),
                )
                for w in windows[key]
            ]
        return ticks

    async def _emit(self, conn: asyncpg.Connection, ticks: list[Tick]) -> None:
        """Publish, then remember: a crash in between re-sends the same ids, never skips one."""
        messages = []
        for kind, subject, window, event in ticks:
            envelope = codec.envelope_for(
                event, event_id=tick_id(kind, subject, window), source=self._source
            )
            headers = [(k, v.encode()) for k, v in codec.headers_for(envelope).items()]
            messages.append(
                (event.topic, topics.partition_key(subject), codec.encode(envelope), headers)
            )
        await self._publisher.publish_many(messages)
        latest: dict[tuple[str, str], datetime] = {}
        counts: dict[str, int] = defaultdict(int)
        for kind, subject, window, _ in ticks:
            latest[(kind, subject)] = max(window, latest.get((kind, subject), window))
            counts[kind] += 1
        await conn.execute(
            f"INSERT INTO {self._state} AS st (kind, subject, last_window)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])"
            " ON CONFLICT (kind, subject) DO UPDATE"
            " SET last_window = greatest(st.last_window, excluded.last_window),"
            " updated_at = now()",
            [k for k, _ in latest],
            [s for _, s in latest],
            list(latest.values()),
        )
        for kind, n in counts.items():
            metrics.SCHEDULER_TICKS.labels(kind).inc(n)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    def _set_leader(self, leader: bool) -> None:
        self.is_leader = leader
        metrics.SCHEDULER_LEADER.set(1 if leader else 0)
