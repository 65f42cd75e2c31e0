"""Batched consumption: the records of one fetch in as few transactions as their work allows,
with every guarantee of the per-record path (consumers/delivery.py).

For each fetched batch (records of one or more partitions, each partition in offset order):

1. Decode every record once. The parking lot is asked once for the whole batch which records
   must wait (their tenant has parked events, or the record was parked before).
2. The *fast* records (decoded, of a batchable type, not waiting) run in one transaction
   (service.event_batch): their inbox rows are claimed with one statement, each runs in a
   savepoint of its own, their results are written to the outbox with one statement at the end.
   The transaction is committed once it has run TENANT_CONSUMER_BATCH_MAX_MS and an effect of
   its own sent a statement; the rest goes on in the next one, so a burst of slow effects (real
   DDL) never makes one huge transaction. Events answered from the rows the batch read (repeated
   requests) never cut it: they hold nothing but its claims and locks.
3. A record that raises in its savepoint is undone alone (its inbox row is given back) and,
   with every later record of the same tenant in the batch, is *held back*: the others commit.
4. After the commit, each partition's offset moves up to its first held-back record (never
   past it), and the held-back ones (plus the invalid, the unbatchable and the waiting) go
   through the per-record path in offset order: retries, parking, hand-back, dead letters, the
   poison budget, exactly as one by one. Each commits its own offset when settled; a hand-back
   (seek) stops its partition for this batch, the rest of it comes again from Kafka.

If the batch transaction itself fails (the database went away), nothing of it committed and
every record goes through the per-record path instead. Records of other partitions never wait
on one another's tenants; a tenant's records never overtake one another.
"""

import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog
from aiokafka import TopicPartition

from adapters.trace_context import consume_span
from consumers.delivery import Delivery
from contracts.codec import Decoded, InvalidMessage
from contracts.envelope import Envelope, now
from domain.errors import TransientError
from runtime import metrics
from runtime.logging import bind_event, unbind_event

log = structlog.get_logger(__name__)


class Batch(Protocol):
    """What service.event_batch.EventBatch offers a consumer."""

    async def claim(self, envelopes: Sequence[Envelope]) -> set[str]: ...
    def event(self, envelope: Envelope) -> AbstractAsyncContextManager[None]: ...
    def skip(self, event_ids: Sequence[str]) -> None: ...

    # Whether an event of the batch sent a statement of its own (beyond the batch's claim).
    effects_ran: bool


# ``open()``: a new batch in a new transaction, committed when the block ends cleanly.
Batches = Callable[[], AbstractAsyncContextManager[Batch]]


class RecordMessage:
    """One record of a fetched batch as the per-record path sees it: its consumer (offsets are
    committed per partition through it) and nack (seek back to the record)."""

    def __init__(self, record: Any, consumer: Any) -> None:
        self.raw_message = record
        self.consumer = consumer
        self.nacked = False

    async def nack(self) -> None:
        self.nacked = True
        self.consumer.seek(TopicPartition(self.raw_message.topic, self.raw_message.partition),
                           self.raw_message.offset)


@dataclass(eq=False)
class _Item:
    msg: RecordMessage
    decoded: Decoded[Any] | None
    done: bool = False  # committed in a batch transaction (or a duplicate there)
    slow: bool = False  # goes through the per-record path

    @property
    def tenant(self) -> str | None:
        return None if self.decoded is None else self.decoded.envelope.subject

    @property
    def partition(self) -> tuple[str, int]:
        record = self.msg.raw_message
        return record.topic, record.partition


class BatchDelivery:
    """Callable given every fetched batch of one consumer group (see the module doc)."""

    def __init__(
        self,
        delivery: Delivery,
        batches: Batches,
        *,
        batchable: frozenset[str],
        max_transaction_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.delivery = delivery
        self._batches = batches
        self._batchable = batchable  # event type names whose effects may share a transaction
        self._max_s = max_transaction_s
        self._clock = clock

    async def __call__(self, records: Sequence[Any], consumer: Any) -> None:
        fetched = self._clock()  # each event's handling is timed from here, as one on its own
        at = now()  # every record's time is checked against the fetch's clock
        items = [self._decode(RecordMessage(r, consumer), at) for r in records]
        try:
            await self._deliver(items, fetched)
        except Exception:
            # Nothing unsettled may be committed past: seek every partition back to its first
            # record not settled, as the per-record path does on an escaped error.
            log.exception("batch_delivery_failed")
            for item in _first_unsettled(items):
                await item.msg.nack()

    def _decode(self, msg: RecordMessage, at: datetime) -> _Item:
        try:
            return _Item(msg, self.delivery.decode(msg.raw_message, at))
        except InvalidMessage:
            return _Item(msg, None, slow=True)  # dead-lettered by the per-record path

    async def _deliver(self, items: list[_Item], fetched: float) -> None:
        d = self.delivery
        if d.breaker.retry_after():  # a dependency is down: the per-record path waits it out
            for item in items:
                item.slow = True
        await self._hold_back(items)
        fast = [i for i in items if not i.slow]
        while fast:
            fast = await self._run_fast(fast, fetched)
        marked = await self._mark_prefixes(items)
        stopped: set[tuple[str, int]] = set()
        for item in items:
            if not item.slow or item.partition in stopped:
                continue
            await d.deliver(item.msg, item.decoded)  # commits its own offset once settled
            if item.msg.nacked:  # handed back: the partition comes again from this record
                stopped.add(item.partition)
            else:
                item.done = True
        for item in _last_of_each_partition(items):
            # Every record of the partition is settled; a slow one marked itself.
            if item.partition not in stopped and not item.slow and item not in marked:
                await self._mark(item)

    async def _hold_back(self, items: list[_Item]) -> None:
        """Mark slow: what the per-record path must decide, and every later record of a tenant
        that has a slow one (so a tenant's records stay in order)."""
        d = self.delivery
        for item in items:
            if item.decoded is not None and (
                item.decoded.envelope.type not in self._batchable
                or d.handler_for(item.decoded.envelope.type) is None
            ):
                item.slow = True
        if d.parking is not None:
            candidates = [i for i in items if not i.slow]
            entries = [(i.tenant or "", i.decoded.envelope.id, i.msg.raw_message)
                       for i in candidates if i.decoded is not None]
            if entries:
                try:
                    for n in await d.parking.holding(d.group, entries):
                        candidates[n].slow = True
                except TransientError as e:
                    # The database is down: seeking back now would spin on the outage. The
                    # per-record path retries with backoff under the breaker, and asks parking
                    # itself before each record runs.
                    d.breaker.record_failure()
                    log.warning("parking_lookup_failed", error=str(e), records=len(candidates))
                    for item in candidates:
                        item.slow = True
        _hold_tenants(items)

    async def _run_fast(self, fast: list[_Item], fetched: float) -> list[_Item]:
        """Run ``fast`` in one transaction, stopping when it has run long enough; answers the
        records left for the next one."""
        d = self.delivery
        started = self._clock()
        ran: list[tuple[_Item, Any]] = []
        left: list[_Item] = []
        # The per-record path's bound fields belong to its last record, not to this batch.
        structlog.contextvars.clear_contextvars()
        try:
            async with self._batches() as batch:
                new = await batch.claim([i.decoded.envelope for i in fast if i.decoded])
                held: set[str] = set()
                for n, item in enumerate(fast):
                    # Only effects count: events answered from the rows the batch read hold
                    # nothing but its claims, and cutting a busy event loop's batch of them
                    # cost a release, a new claim and a commit each time.
                    if batch.effects_ran and self._clock() - started >= self._max_s and ran:
                        left = fast[n:]
                        batch.skip([i.decoded.envelope.id for i in left if i.decoded])
                        break
                    assert item.decoded is not None
                    env = item.decoded.envelope
                    if env.subject in held:
                        item.slow = True
                        continue
                    if env.id not in new:  # processed before, or earlier in this batch
                        ran.append((item, None))
                        continue
                    new.discard(env.id)
                    bind_event(d.group, item.msg.raw_message, env)
                    try:
                        with consume_span(d.group, item.msg.raw_message, env):
                            async with batch.event(env):
                                outcome = await d.handler_for(env.type)(item.decoded)  # type: ignore[misc]
                    except Exception as e:  # undone alone; the per-record path decides
                        log.debug("held_back", event_id=env.id, tenant_id=env.subject, error=repr(e))
                        item.slow = True
                        held.add(env.subject)
                    else:
                        ran.append((item, outcome))
                for item in left:  # a tenant held in this transaction stays held in the next
                    if item.tenant in held:
                        item.slow = True
        except Exception as e:  # nothing of it committed: every record goes one by one
            unbind_event()
            d.breaker.record_failure()
            log.warning("batch_failed", error=repr(e), records=len(fast))
            for item in fast:
                item.slow = True
            return []
        d.breaker.record_success()
        self._count(ran, len(fast) - len(ran) - len(left), self._clock() - fetched)
        for item, _ in ran:
            item.done = True
        return [i for i in left if not i.slow]

    def _count(self, ran: list[tuple[_Item, Any]], held: int, seconds: float) -> None:
        """Outcomes, and each event's time from the fetch's decoding to its durable commit."""
        group = self.delivery.group
        outcomes: Counter[tuple[str, str]] = Counter()
        for item, outcome in ran:
            assert item.decoded is not None
            outcomes[(item.decoded.envelope.type, _outcome(outcome))] += 1
        types: Counter[str] = Counter()
        for (type_, outcome), n in outcomes.items():
            metrics.EVENTS.labels(group, type_, outcome).inc(n)
            types[type_] += n
        for type_, n in types.items():  # each label set looked up once, not once per event
            histogram = metrics.HANDLER_SECONDS.labels(group, type_)
            for _ in range(n):
                histogram.observe(seconds)
        # One line per transaction, not per event.
        unbind_event()
        log.info("batch_handled", group=self.delivery.group, records=len(ran), held_back=held,
                 duplicates=sum(n for (_, o), n in outcomes.items() if o == "duplicate"))

    async def _mark_prefixes(self, items: list[_Item]) -> list[_Item]:
        """Each partition's offset up to its first record not done (never past it)."""
        prefix: dict[tuple[str, int], _Item] = {}
        blocked: set[tuple[str, int]] = set()
        for item in items:
            if item.partition in blocked:
                continue
            if item.done:
                prefix[item.partition] = item
            else:
                blocked.add(item.partition)
        for item in prefix.values():
            await self._mark(item)
        return list(prefix.values())

    async def _mark(self, item: _Item) -> None:
        await self.delivery.offsets.mark(item.msg.consumer, *item.partition,
                                         item.msg.raw_message.offset)


def _outcome(outcome: Any) -> str:
    if outcome is None:
        return "duplicate"
    return "accepted" if type(outcome).__name__ == "Accepted" else "processed"


def _hold_tenants(items: list[_Item]) -> None:
    """Every record after a slow one of the same tenant is slow too."""
    slow_tenants: set[str] = set()
    for item in items:
        tenant = item.tenant
        if tenant is None:
            continue
        if tenant in slow_tenants:
            item.slow = True
        elif item.slow:
            slow_tenants.add(tenant)


def _last_of_each_partition(items: list[_Item]) -> list[_Item]:
    last: dict[tuple[str, int], _Item] = {}
    for item in items:
        last[item.partition] = item
    return list(last.values())


def _first_unsettled(items: list[_Item]) -> list[_Item]:
    first: dict[tuple[str, int], _Item] = {}
    for item in items:
        if not item.done and item.partition not in first:
            first[item.partition] = item
    return list(first.values())
