"""Publishes outbox rows to Kafka in id order, then marks them sent.

One leader at a time (``producers.leader``: a session-level advisory lock, ``outbox_lock_id``):
two relays racing would break per-tenant order. A standby polls for the lock and takes over
when the leader's session ends, or within about ``leader_session_timeout_s`` +
``outbox_poll_interval_s`` when the leader's host or network vanishes silently. A crash between
publish and mark republishes the same rows: consumers see a duplicate with the same event id,
never a lost or invented result.

Marking a batch sent deletes its ids from ``outbox_pending``: a statement and a commit (a WAL
flush) that publishing need not wait for (until control migration 0015 it was an UPDATE of every
row, 0.1-0.5 s for 1,000 rows in a backlog's drain, measured). So marks run in the background, in
one task: while one mark runs, the batches published meanwhile wait, and the next marks them all
at once. Publishing never waits for a mark until UNMARKED_BATCHES batches are published and not
yet marked (PostgreSQL is behind, and every read leaves their ids out). Publishing never
overlaps: batch N+1 is sent only after every record of batch N is acknowledged, so Kafka sees the
outbox's order. A mark's failure surfaces at the next batch (or flush), which then steps down; the
rows not marked are published again, as after a crash between publish and mark.
"""

import asyncio
import contextlib
import time

import asyncpg

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.outbox import NOTIFY_CHANNEL, PostgresOutbox
from adapters.trace_context import publish_spans
from producers.leader import leader_election
from runtime import metrics
from runtime.settings import Settings

# While the relay has a backlog, the backlog gauges are refreshed at most this often: counting
# the unsent rows scans all of them, and a busy relay would pay that scan every batch for the
# gauges alone. A batch that catches up always refreshes them, so they reach 0 at once.
BACKLOG_EVERY_S = 1.0
# Batches published and not yet marked sent that the relay lets wait for its marks before it
# waits for them itself.
UNMARKED_BATCHES = 4


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
        self._backlog_due = 0.0  # time.monotonic() of the next backlog count while busy
        self._marking: asyncio.Task[None] | None = None  # marks what is published, then ends
        self._in_flight: list[int] = []  # ids its running mark dequeues
        self._unmarked: list[int] = []  # ids published since, for its next mark
        self._caught_up = False  # the last batch read was short: count the backlog after a mark
        self.election = leader_election(
            settings,
            "relay",
            settings.names.outbox_lock_id,
            self._publish_while_leader,
            poll_s=settings.outbox_poll_interval_s,
            gauge=metrics.RELAY_LEADER,
        )

    @property
    def is_leader(self) -> bool:
        return self.election.is_leader

    async def run(self) -> None:
        """Until stop(): hold leadership when possible and drain the outbox."""
        await self.election.run()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        self.election.stop()

    async def _publish_while_leader(self) -> None:
        await self.election.lock.listen(NOTIFY_CHANNEL, self._on_notify)
        try:
            while not self._stopping.is_set():
                published = await self.drain_once()
                if published < self._settings.outbox_batch_size:
                    # Caught up: the marks go on in the background, a notification is not
                    # kept waiting behind them.
                    await self._sleep(self._settings.outbox_poll_interval_s)
            await self.flush()  # a graceful stop leaves nothing to publish twice
        finally:
            # Leadership lost: the rows of a mark cut short are published again (duplicates).
            if self._marking is not None:
                self._marking.cancel()
                with contextlib.suppress(BaseException):
                    await self._marking
            self._forget_marks()

    async def drain_once(self) -> int:
        """Publish one batch and have it marked sent; returns how many rows were published.

        A mark that failed is raised here, before anything is read. The relay waits for its
        marks only when UNMARKED_BATCHES batches are waiting for one."""
        self._reap_mark()
        batch = self._settings.outbox_batch_size
        async with self._pool.acquire() as conn:
            rows = await self._outbox.unsent(conn, batch, self._in_flight + self._unmarked)
            if rows:
                physical = self._settings.names.topics.topic  # spans name the topic Kafka knows
                messages = [(r.topic, r.key, r.payload, r.headers) for r in rows]
                with publish_spans((physical(t), value, h) for t, _, value, h in messages):
                    await self._publisher.publish_many(messages)
                metrics.OUTBOX_PUBLISHED.inc(len(rows))
        self._unmarked += [r.id for r in rows]
        self._caught_up = len(rows) < batch
        self._reap_mark()
        if self._marking is None:  # else the running mark takes these rows in its next round
            self._marking = asyncio.create_task(self._mark())
        elif len(self._in_flight) + len(self._unmarked) >= UNMARKED_BATCHES * batch:
            await self.flush()
        return len(rows)

    async def flush(self) -> None:
        """Wait until every published row is marked sent; raises what a mark raised."""
        while self._marking is not None or self._unmarked:
            if self._marking is None:
                self._marking = asyncio.create_task(self._mark())
            await asyncio.wait([self._marking])  # its failure is raised by _reap_mark
            self._reap_mark()

    def _reap_mark(self) -> None:
        """Forget a mark that has ended; raise what it raised. Then the rows it did not mark,
        and those waiting for it, are forgotten too: the next term publishes them again."""
        marking = self._marking
        if marking is not None and marking.done():
            self._marking = None
            try:
                marking.result()
            except BaseException:
                self._forget_marks()
                raise

    def _forget_marks(self) -> None:
        self._marking, self._in_flight, self._unmarked = None, [], []

    async def _mark(self) -> None:
        """Mark what is published sent, one statement per round for all that waited, until nothing
        is left; then count the backlog: when the last batch caught up (so the gauge reaches 0
        at once), and at most every BACKLOG_EVERY_S while busy (counting scans every unsent
        row)."""
        async with self._pool.acquire() as conn:
            while self._unmarked:
                self._in_flight, self._unmarked = self._unmarked, []
                await self._outbox.mark_sent(conn, self._in_flight)
                self._in_flight = []
            now = time.monotonic()
            if self._caught_up or now >= self._backlog_due:
                self._backlog_due = now + BACKLOG_EVERY_S
                backlog, age = await self._outbox.backlog(conn)
                metrics.OUTBOX_BACKLOG.set(backlog)
                metrics.OUTBOX_OLDEST_AGE.set(age)

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

    async def _sleep(self, seconds: float) -> None:
        """Wait for a notification, stop() or the poll interval, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()
