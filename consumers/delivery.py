"""What happens to one Kafka record, for every consumer group alike.

decode -> (dead letter | handler with bounded retries) -> commit. The offset is committed only
after the handler's transaction committed, the record was dead-lettered, or it was parked
(durably, in PostgreSQL), so nothing is lost; the inbox makes a redelivery a no-op, so nothing is
done twice.

A record still failing transiently after TENANT_RETRY_ATTEMPTS is parked: its tenant's later
records queue behind it and the partition's other tenants go on; the re-driver
(consumers/redriver.py) tries the tenant's parked records in order. Without parking (or when
parking fails) it is handed back to Kafka. Either way it is given up, as a dead letter with
reason ``retries_exhausted``, once its redelivery budget (attempts and time) is spent.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from adapters.trace_context import consume_span
from consumers.offsets import DurableOffsets
from consumers.parking import ParkedEvents, parked_record
from contracts.codec import Decoded, DecodeLimits, InvalidMessage, decode
from contracts.events import Event
from contracts.topics import Topics
from domain.circuit_breaker import CircuitBreaker
from domain.errors import PermanentError, TransientError
from domain.redelivery import RETRIES_EXHAUSTED, RedeliveryBudget
from runtime import metrics
from runtime.logging import bind_event
from runtime.settings import Settings
from service.event_transaction import Accepted, Outcome, Staged

log = structlog.get_logger(__name__)

# A handler answers the result it staged in the outbox, an acceptance of a longer job, or None
# when the inbox says the event was already processed.
Handler = Callable[[Decoded[Any]], Awaitable[Outcome]]
NOT_HANDLED = "not_handled"
HANDLER_ERROR = "handler_error"


class AckableMessage(Protocol):
    """The part of FastStream's KafkaAckableMessage we use: its consumer (to commit this record's
    offset explicitly) and nack (seek back to it)."""

    raw_message: Any
    consumer: Any  # the aiokafka consumer that fetched it

    async def nack(self) -> None: ...


class DeadLetters(Protocol):
    """Publishes ``record`` (a ConsumerRecord or ParkedRecord) unchanged, plus why and whence."""

    async def send(self, record: Any, *, group: str, reason: str, detail: str) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    base_delay_s: float
    max_delay_s: float
    poison_redeliveries: int
    budget: RedeliveryBudget = RedeliveryBudget(max_attempts=50, max_age_s=3600.0)
    parked_max_delay_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(
            settings.retry_attempts,
            settings.retry_base_delay_s,
            settings.retry_max_delay_s,
            settings.poison_redeliveries,
            RedeliveryBudget(settings.redelivery_max_attempts, settings.redelivery_max_age_s),
            settings.parked_max_delay_s,
        )

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so replicas don't retry in lockstep."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** min(attempt, 30)))


class Delivery:
    """Callable given every record of one consumer group."""

    def __init__(
        self,
        *,
        group: str,
        handlers: Mapping[type[Event], Handler],
        dead_letters: DeadLetters,
        retry: RetryPolicy,
        limits: DecodeLimits,
        breaker: CircuitBreaker | None = None,
        commit_interval_s: float = 0.0,
        topics: Topics | None = None,
        parking: ParkedEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.group = group
        self.topics = topics or Topics()  # records arrive on physical (namespaced) topics
        self._handlers = {cls.__name__: h for cls, h in handlers.items()}
        self.dead_letters = dead_letters
        self.retry = retry
        self.limits = limits
        # Shared by every record of the group: while a dependency is down, the consumer waits
        # out the breaker instead of hammering it with each record's retries.
        self.breaker = breaker or CircuitBreaker(retry.attempts, retry.max_delay_s)
        self.offsets = DurableOffsets(commit_interval_s)
        self.parking = parking
        self._clock = clock
        # Unexpected errors per record, in this process: a bug must not loop forever.
        self._failures: dict[tuple[str, int, int], int] = {}
        # Transient attempts and first failure of records handed back, in this process: a
        # record that keeps failing must not loop forever either.
        self._handbacks: dict[tuple[str, int, int], tuple[int, float]] = {}

    async def __call__(self, msg: AckableMessage) -> None:
        await self.deliver(msg)

    async def deliver(self, msg: AckableMessage, decoded: Decoded[Any] | None = None) -> None:
        """The per-record path; ``decoded``: the record's event, when a batch decoded it."""
        try:
            await self._deliver(msg, decoded)
        except Exception:
            # Under MANUAL acks an escaped error would let the next record's commit skip this
            # one; seeking back keeps it (e.g. the dead-letter topic was unreachable).
            log.exception("delivery_failed")
            await msg.nack()

    def decode(self, record: Any, at: datetime | None = None) -> Decoded[Any]:
        """The record's event, checked against this group's limits (raises InvalidMessage);
        ``at``: the clock its time is checked against (default now; a batch reads it once)."""
        return decode(
            record.value or b"",
            key=record.key,
            topic=self.topics.logical(record.topic),
            limits=self.limits,
            at=at,
            headers=record.headers or (),
        )

    async def _deliver(self, msg: AckableMessage, decoded: Decoded[Any] | None) -> None:
        record = msg.raw_message
        structlog.contextvars.clear_contextvars()
        bind_event(self.group, record, None)  # _dispatch adds the envelope once decoded
        if decoded is None:
            try:
                decoded = self.decode(record)
            except InvalidMessage as e:
                with consume_span(self.group, record, None):
                    await self._dead_letter(msg, "invalid", e.reason, e.detail)
                return
        with consume_span(self.group, record, decoded.envelope):
            await self._dispatch(msg, decoded)

    async def _dispatch(self, msg: AckableMessage, decoded: Decoded[Any]) -> None:
        envelope = decoded.envelope
        bind_event(self.group, msg.raw_message, envelope)
        handler = self._handlers.get(envelope.type)
        if handler is None:
            await self._dead_letter(msg, envelope.type, NOT_HANDLED, f"group {self.group}")
            return
        started = time.perf_counter()
        outcome = await self._handle(msg, decoded, handler)
        metrics.HANDLER_SECONDS.labels(self.group, envelope.type).observe(
            time.perf_counter() - started
        )
        metrics.EVENTS.labels(self.group, envelope.type, outcome).inc()

    def handler_for(self, type_: str) -> Handler | None:
        """The group's handler of events of ``type_`` (the re-driver dispatches through it)."""
        return self._handlers.get(type_)

    async def _handle(self, msg: AckableMessage, decoded: Decoded[Any], handler: Handler) -> str:
        record = msg.raw_message
        slot = (record.topic, record.partition, record.offset)
        for attempt in range(self.retry.attempts):
            if wait := self.breaker.retry_after():
                log.info("circuit_open", wait_s=round(wait, 2))
                metrics.CIRCUIT_OPEN.labels(self.group).set(1)
                await asyncio.sleep(wait)
            try:
                if await self._must_wait(decoded, record):
                    # Behind the tenant's parked events (or parked already): queue, don't run.
                    return await self._park(
                        msg, decoded, 0, 0.0, "behind the tenant's parked events"
                    )
                result = await handler(decoded)
            except TransientError as e:
                self.breaker.record_failure()
                if attempt + 1 >= self.retry.attempts:
                    return await self._give_back(msg, decoded, e)
                metrics.EVENTS.labels(self.group, decoded.envelope.type, "retried").inc()
                delay = self.retry.delay(attempt)
                log.info("retrying", error=str(e), attempt=attempt + 1, delay_s=round(delay, 3))
                await asyncio.sleep(delay)
            except PermanentError as e:
                await self._dead_letter(msg, decoded.envelope.type, e.reason, e.detail)
                return "dead_lettered"
            except Exception as e:  # a bug: redeliver a few times, then dead-letter
                slot = (record.topic, record.partition, record.offset)
                self._failures[slot] = failures = self._failures.get(slot, 0) + 1
                log.exception("handler_error", failures=failures)
                if failures >= self.retry.poison_redeliveries:
                    del self._failures[slot]
                    await self._dead_letter(msg, decoded.envelope.type, HANDLER_ERROR, repr(e))
                    return "dead_lettered"
                await msg.nack()
                return "handed_back"
            else:
                # Per-event lines are DEBUG: at thousands of events/s an INFO line each would
                # cost more than the event (outcomes are counted in metrics.EVENTS).
                self.breaker.record_success()
                metrics.CIRCUIT_OPEN.labels(self.group).set(0)
                self._handbacks.pop(slot, None)
                await self._commit(msg)
                if result is None:
                    log.debug("duplicate_skipped")
                    return "duplicate"
                if isinstance(result, Accepted):
                    log.debug("accepted", job_id=result.job_id)
                    return "accepted"
                if isinstance(result, Staged):
                    log.debug("handled", results=result.results)
                    return "processed"
                log.debug("handled", result=type(result).__name__)
                return "processed"
        raise AssertionError("unreachable")

    async def _must_wait(self, decoded: Decoded[Any], record: Any) -> bool:
        if self.parking is None:
            return False
        env = decoded.envelope
        return await self.parking.holds(self.group, env.subject, env.id, parked_record(record))

    async def _give_back(self, msg: AckableMessage, decoded: Decoded[Any], error: Exception) -> str:
        """The record's attempts in this delivery are spent: park it, hand it back, or give up."""
        record = msg.raw_message
        slot = (record.topic, record.partition, record.offset)
        tries, first = self._handbacks.get(slot, (0, self._clock()))
        tries += self.retry.attempts
        age = self._clock() - first
        if self.retry.budget.exhausted(tries, age):
            self._handbacks.pop(slot, None)
            detail = f"{tries} attempts over {age:.0f}s; last: {error}"
            await self._dead_letter(msg, decoded.envelope.type, RETRIES_EXHAUSTED, detail)
            return "dead_lettered"
        if self.parking is not None:
            try:
                outcome = await self._park(msg, decoded, tries, age, str(error))
            except TransientError as e:  # the database itself is down: Kafka keeps the record
                log.warning("park_failed", error=str(e))
            else:
                self._handbacks.pop(slot, None)
                return outcome
        self._handbacks[slot] = (tries, first)
        # Hand the record back (seek): it is redelivered, and meanwhile the consumer serves its
        # other partitions.
        log.warning("handed_back", error=str(error), attempts=tries)
        await msg.nack()
        return "handed_back"

    async def _park(
        self, msg: AckableMessage, decoded: Decoded[Any], tries: int, age: float, error: str
    ) -> str:
        assert self.parking is not None
        env = decoded.envelope
        new = await self.parking.park(
            self.group,
            env.subject,
            env.id,
            parked_record(msg.raw_message),
            attempts=tries,
            age_s=age,
            delay_s=self.retry.delay(tries) if tries else 0.0,
            error=error,
        )
        log.warning("parked", error=error, attempts=tries, already_parked=not new)
        # Only now, with the parked row committed, may the offset move past the record.
        await self._commit(msg)
        return "parked"

    async def _dead_letter(self, msg: AckableMessage, type_: str, reason: str, detail: str) -> None:
        log.warning("dead_lettered", reason=reason, detail=detail)
        # If the DLQ publish fails, the exception propagates, nothing is committed and the record
        # comes back: a dead letter is never dropped on the floor.
        await self.dead_letters.send(
            msg.raw_message, group=self.group, reason=reason, detail=detail
        )
        metrics.EVENTS.labels(self.group, type_, "dead_lettered").inc()
        await self._commit(msg)

    async def _commit(self, msg: AckableMessage) -> None:
        record = msg.raw_message
        await self.offsets.mark(msg.consumer, record.topic, record.partition, record.offset)

    async def stop(self) -> None:
        """Commit every handled offset now; from here on each handled record commits at once."""
        await self.offsets.stop()
