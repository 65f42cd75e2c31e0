"""The re-driver: tries each tenant's parked events again, oldest first, until each one is
handled or given up. One runs beside every consumer group that parks.

A claim holds the tenant's oldest parked event exclusively (see consumers/parking.py), so two
replicas never drive one tenant at once, and a tenant's later events stay behind it. Each try is
one handler call: the inbox makes a parked event that had in fact committed (a crash after the
handler, before the row was settled) a no-op that settles it as done. Each try is a span
``redrive <topic>`` continuing the parked record's own trace context, so its result (or dead
letter) joins the request's trace.
"""

import asyncio
from typing import Any

import structlog

from adapters.trace_context import consume_span
from consumers.delivery import HANDLER_ERROR, NOT_HANDLED, Delivery
from consumers.parking import Claim
from contracts.codec import Decoded, InvalidMessage, decode
from domain.errors import PermanentError, TransientError
from domain.redelivery import RETRIES_EXHAUSTED, backoff_s
from runtime import metrics

log = structlog.get_logger(__name__)


class Redriver:
    """Background loop (run/stop) over one Delivery's parked events."""

    def __init__(self, delivery: Delivery, poll_s: float) -> None:
        assert delivery.parking is not None, "a re-driver needs a Delivery that parks"
        self._delivery = delivery
        self._parking = delivery.parking
        self._poll_s = poll_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                drove = await self.drive_one()
            except Exception:  # the database or the DLQ is down: try again after a pause
                log.exception("redrive_failed")
                drove = False
            if not drove:
                try:
                    await asyncio.wait_for(self._stopping.wait(), self._poll_s)
                except TimeoutError:
                    pass

    async def drive_one(self) -> bool:
        """Try the next due parked event once; False when none was due."""
        d = self._delivery
        async with self._parking.claim_due(d.group) as claim:
            if claim is None:
                return False
            record = claim.event.record
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(
                group=d.group,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                tenant_id=claim.event.tenant_id,
                redrive=True,
            )
            outcome = await self._try(claim)
            log.info("redriven", outcome=outcome, attempts=claim.event.attempts)
            return True

    async def _try(self, claim: Claim) -> str:
        d, event = self._delivery, claim.event
        record = event.record
        try:
            decoded = decode(
                record.value,
                key=record.key,
                topic=d.topics.logical(record.topic),  # parked as it arrived: namespaced
                limits=d.limits,
                headers=record.headers,
            )
        except InvalidMessage as e:  # e.g. it grew older than TENANT_EVENT_MAX_AGE_S meanwhile
            with consume_span(d.group, record, None, redrive=True):
                return await self._dead_letter(claim, "invalid", e.reason, e.detail)
        with consume_span(d.group, record, decoded.envelope, redrive=True):
            return await self._handle(claim, decoded)

    async def _handle(self, claim: Claim, decoded: Decoded[Any]) -> str:
        d, event = self._delivery, claim.event
        type_ = decoded.envelope.type
        handler = d.handler_for(type_)
        if handler is None:  # the handler went away with a deploy while the event waited
            return await self._dead_letter(claim, type_, NOT_HANDLED, f"group {d.group}")
        try:
            await handler(decoded)
        except TransientError as e:
            attempts = event.attempts + 1
            if d.retry.budget.exhausted(attempts, event.age_s):
                detail = f"{attempts} attempts over {event.age_s:.0f}s; last: {e}"
                return await self._dead_letter(claim, type_, RETRIES_EXHAUSTED, detail)
            delay = backoff_s(attempts, d.retry.base_delay_s, d.retry.parked_max_delay_s)
            await claim.retry_later(delay, str(e), handler_error=False)
            metrics.EVENTS.labels(d.group, type_, "retried").inc()
            return "retry_later"
        except PermanentError as e:
            return await self._dead_letter(claim, type_, e.reason, e.detail)
        except Exception as e:  # a bug: a few tries, then a dead letter, as for live records
            log.exception("handler_error", failures=event.handler_errors + 1)
            if event.handler_errors + 1 >= d.retry.poison_redeliveries:
                return await self._dead_letter(claim, type_, HANDLER_ERROR, repr(e))
            delay = backoff_s(event.handler_errors + 1, d.retry.base_delay_s, d.retry.max_delay_s)
            await claim.retry_later(delay, repr(e), handler_error=True)
            return "retry_later"
        await claim.done()
        metrics.EVENTS.labels(d.group, type_, "processed").inc()
        return "processed"

    async def _dead_letter(self, claim: Claim, type_: str, reason: str, detail: str) -> str:
        d = self._delivery
        log.warning("dead_lettered", reason=reason, detail=detail)
        # If this publish fails, the claim block raises: nothing is settled, the event stays.
        record: Any = claim.event.record
        await d.dead_letters.send(record, group=d.group, reason=reason, detail=detail)
        await claim.dead_lettered()
        metrics.EVENTS.labels(d.group, type_, "dead_lettered").inc()
        return "dead_lettered"
