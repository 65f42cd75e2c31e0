"""Publishes outbox rows to Kafka in id order, then marks them sent.

One leader at a time (a session-level advisory lock on a dedicated connection): two relays
racing would break per-tenant order. A standby polls for the lock and takes over when the
leader's session ends. A crash between publish and mark republishes the same rows: consumers see
a duplicate with the same event id, never a lost or invented result.
"""

import asyncio
import contextlib

import asyncpg
import structlog

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.errors import is_transient
from adapters.postgres.outbox import NOTIFY_CHANNEL, PostgresOutbox
from domain.errors import TransientError
from runtime import metrics
from runtime.settings import Settings

log = structlog.get_logger(__name__)


class OutboxRelay:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        outbox: PostgresOutbox,
        publisher: KafkaEventPublisher,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._outbox = outbox
        self._publisher = publisher
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self.is_leader = False

    async def run(self) -> None:
        """Until stop(): hold leadership when possible and drain the outbox."""
        while not self._stopping.is_set():
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # lost connection, broker down: step back and retry
                if not (isinstance(e, TransientError) or is_transient(e)):
                    log.exception("relay_error")
                else:
                    log.warning("relay_interrupted", error=str(e))
            self._set_leader(False)
            await self._sleep(self._settings.outbox_poll_interval_s)

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    async def _lead(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._settings.pg_dsn.get_secret_value(),
            server_settings={"application_name": "tenant-service-relay"},
        )
        try:
            while not self._stopping.is_set():
                if await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", self._settings.names.outbox_lock_id
                ):
                    break
                await self._sleep(self._settings.outbox_poll_interval_s)  # standby
            else:
                return
            self._set_leader(True)
            log.info("relay_leader")
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            while not self._stopping.is_set():
                if conn.is_closed():
                    raise TransientError("relay lock connection closed")
                published = await self.drain_once()
                if published < self._settings.outbox_batch_size:
                    await self._sleep(self._settings.outbox_poll_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def drain_once(self) -> int:
        """Publish one batch; returns how many rows were published."""
        async with self._pool.acquire() as conn:
            rows = await self._outbox.unsent(conn, self._settings.outbox_batch_size)
            if rows:
                await self._publisher.publish_many(
                    [
                        (r.topic, r.key, r.payload, [(k, v.encode()) for k, v in r.headers.items()])
                        for r in rows
                    ]
                )
                await self._outbox.mark_sent(conn, [r.id for r in rows])
                metrics.OUTBOX_PUBLISHED.inc(len(rows))
            backlog, age = await self._outbox.backlog(conn)
        metrics.OUTBOX_BACKLOG.set(backlog)
        metrics.OUTBOX_OLDEST_AGE.set(age)
        return len(rows)

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

    async def _sleep(self, seconds: float) -> None:
        """Wait for a notification, stop() or the poll interval, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    def _set_leader(self, leader: bool) -> None:
        self.is_leader = leader
        metrics.RELAY_LEADER.set(1 if leader else 0)
