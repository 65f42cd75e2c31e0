"""In-memory fakes of the ports Delivery and the re-driver use: no Kafka, no PostgreSQL."""

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from consumers.delivery import Delivery, RetryPolicy
from consumers.parking import Claim, ParkedEvent, ParkedEvents, ParkedRecord
from contracts import codec, topics
from contracts.codec import DecodeLimits
from contracts.envelope import Envelope
from contracts.events import TenantDeactivated, TenantRequested
from domain.redelivery import RedeliveryBudget
from service.event_transaction import Outcome, Staged

_PROCESSED = Staged(1)
LIMITS = DecodeLimits(max_bytes=1 << 20, max_future_s=300.0, max_age_s=86_400.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class FakeConsumer:
    """Records each explicit offset commit, as aiokafka's commit({tp: next offset})."""

    def __init__(self) -> None:
        self.commits: list[int] = []
        self.seeks: list[tuple[int, int]] = []  # (partition, offset)

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits += list(offsets.values())

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp.partition, offset))


class FakeMessage:
    def __init__(self, record: FakeRecord, consumer: FakeConsumer) -> None:
        self.raw_message = record
        self.consumer = consumer
        self.nacks = 0

    async def nack(self) -> None:
        self.nacks += 1


class FakeDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, str]] = []  # (record, reason)
        self.failing = False

    async def send(self, record: Any, *, group: str, reason: str, detail: str) -> None:
        if self.failing:
            raise ConnectionError("dlq unreachable")
        self.sent.append((record, reason))

    @property
    def reasons(self) -> list[str]:
        return [reason for _, reason in self.sent]


@dataclass
class _Row:
    seq: int
    group: str
    tenant_id: str
    event_id: str
    record: ParkedRecord
    attempts: int
    first_failed_at: float
    next_attempt_at: float
    handler_errors: int = 0
    status: str = "parked"
    locked: bool = False


class _FakeClaim:
    def __init__(self, row: _Row, clock: Clock) -> None:
        self._row, self._clock = row, clock
        self.event = ParkedEvent(
            row.tenant_id, row.record, row.attempts, row.handler_errors,
            clock() - row.first_failed_at,
        )
        self.decision: Callable[[], None] | None = None

    async def done(self) -> None:
        self.decision = lambda: setattr(self._row, "status", "done")

    async def dead_lettered(self) -> None:
        self.decision = lambda: setattr(self._row, "status", "dead_lettered")

    async def retry_later(self, delay_s: float, error: str, *, handler_error: bool) -> None:
        def apply() -> None:
            if handler_error:
                self._row.handler_errors += 1
            else:
                self._row.attempts += 1
            self._row.next_attempt_at = self._clock() + delay_s

        self.decision = apply


class FakeParkedEvents(ParkedEvents):
    """The parking contract in memory (see consumers/parking.py), with an injected clock."""

    def __init__(self, clock: Clock) -> None:
        self.rows: list[_Row] = []
        self._clock = clock
        self.failing = False
        self.lookups = 0  # batch lookups (holding)
        self.lookup_failures = 0  # the next batch lookups that fail (the database is down)

    async def park(self, group: str, tenant_id: str, event_id: str, record: ParkedRecord, *,
                   attempts: int, age_s: float, delay_s: float, error: str) -> bool:
        if self.failing:
            from domain.errors import TransientError
            raise TransientError("parking database down")
        slot = (group, record.topic, record.partition, record.offset, event_id)
        if any((r.group, r.record.topic, r.record.partition, r.record.offset, r.event_id) == slot
               for r in self.rows):
            return False
        now = self._clock()
        self.rows.append(_Row(len(self.rows) + 1, group, tenant_id, event_id, record, attempts,
                              now - age_s, now + delay_s))
        return True

    async def holds(self, group: str, tenant_id: str, event_id: str, record: ParkedRecord) -> bool:
        return any(r.group == group and (
            (r.tenant_id == tenant_id and r.status == "parked")
            or ((r.record.topic, r.record.partition, r.record.offset, r.event_id)
                == (record.topic, record.partition, record.offset, event_id))) for r in self.rows)

    async def holding(self, group: str, entries: Any) -> set[int]:
        self.lookups += 1
        if self.lookup_failures:
            from domain.errors import TransientError
            self.lookup_failures -= 1
            raise TransientError("parked events lookup: database down")
        return {n for n, (tenant, event_id, record) in enumerate(entries)
                if await self.holds(group, tenant, event_id, record)}

    @contextlib.asynccontextmanager
    async def claim_due(self, group: str) -> AsyncIterator[Claim | None]:
        waiting = [r for r in self.rows if r.group == group and r.status == "parked"]
        heads = [r for r in waiting if not any(
            o.tenant_id == r.tenant_id and o.seq < r.seq for o in waiting)]
        due = sorted((r for r in heads if not r.locked and r.next_attempt_at <= self._clock()),
                     key=lambda r: r.next_attempt_at)
        if not due:
            yield None
            return
        row = due[0]
        row.locked = True
        claim = _FakeClaim(row, self._clock)
        try:
            yield claim
            if claim.decision is not None:
                claim.decision()
        finally:
            row.locked = False

    def statuses(self, tenant_id: str) -> list[str]:
        return [r.status for r in self.rows if r.tenant_id == tenant_id]


class ScriptedHandler:
    """Answers each call with the next scripted step: an exception to raise, or an outcome."""

    def __init__(self, *steps: Any, then: Any = _PROCESSED) -> None:
        self.steps = list(steps)
        self.then = then
        self.calls: list[str] = []  # event ids, in call order

    async def __call__(self, decoded: Any) -> Outcome:
        self.calls.append(decoded.envelope.id)
        step = self.steps.pop(0) if self.steps else self.then
        if isinstance(step, BaseException):
            raise step
        return step  # type: ignore[no-any-return]


def retry_policy(attempts: int = 3, *, budget_attempts: int = 9, budget_s: float = 0.0,
                 poison: int = 2) -> RetryPolicy:
    return RetryPolicy(attempts, 1e-4, 1e-3, poison, RedeliveryBudget(budget_attempts, budget_s),
                       parked_max_delay_s=5.0)


def make_delivery(handlers: dict[Any, Any], *, retry: RetryPolicy | None = None,
                  dead_letters: FakeDeadLetters | None = None,
                  parking: FakeParkedEvents | None = None, clock: Clock | None = None) -> Delivery:
    return Delivery(group="g", handlers=handlers, dead_letters=dead_letters or FakeDeadLetters(),
                    retry=retry or retry_policy(), limits=LIMITS, parking=parking,
                    clock=clock or Clock())


def requested(tenant_id: str) -> Envelope:
    return codec.envelope_for(TenantRequested(tenant_id=tenant_id, plan="free"), source="urn:t")


def deactivated(tenant_id: str) -> Envelope:
    return codec.envelope_for(TenantDeactivated(tenant_id=tenant_id), source="urn:t")


class Partition:
    """One partition of tenants.lifecycle: hands out messages at increasing offsets."""

    def __init__(self, number: int = 0, consumer: FakeConsumer | None = None) -> None:
        self.consumer = consumer or FakeConsumer()
        self.number = number
        self._next = 0

    def message(self, envelope: Envelope | bytes, key: bytes = b"acme") -> FakeMessage:
        value = envelope if isinstance(envelope, bytes) else codec.encode(envelope)
        if not isinstance(envelope, bytes):
            key = envelope.subject.encode()
        record = FakeRecord(topics.LIFECYCLE, self.number, self._next, key, value, [("h", b"\xff")])
        self._next += 1
        return FakeMessage(record, self.consumer)
