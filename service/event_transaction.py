"""The transaction every handler shares: inbox row + effect + outbox row, one unit of work."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from adapters.trace_context import span, writer_attributes
from contracts.codec import envelope_for
from contracts.envelope import Envelope
from contracts.events import Result
from service.event_batch import EventBatch, current_batch_unit
from service.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class Accepted:
    """The event was taken on as a job; its result comes later, through the outbox."""

    job_id: str


@dataclass(frozen=True)
class Staged:
    """The effect wrote its results to the outbox itself: many of them (e.g. one per tenant),
    each with a deterministic id, in the same transaction."""

    results: int


# What a handler answers; None means the inbox had the event already.
Outcome = Result | Accepted | Staged | None
# What one effect answers: each use case names its own precise union.
R = TypeVar("R", bound=Result | Accepted | Staged)
# The unit of work an effect is handed: the port, or (a use case not yet on the ports only)
# an adapter's own.
U = TypeVar("U", bound=UnitOfWork, covariant=True)
Effect = Callable[[U], Awaitable[R]]


class EventTransaction(Generic[U]):
    """Runs an event's effect exactly once per consumer group, in one unit of work."""

    def __init__(self, uows: Callable[[str], U], group: str) -> None:
        self.uows = uows  # also for work outside an event (a batch, a job)
        self.group = group
        # Each event's span attributes, made once (a batch runs hundreds of events).
        self._attributes: dict[str, str | bool] = {
            "db.system.name": "postgresql", "tenant.group": group,
        }
        self._batched = {**self._attributes, "tenant.batched": True}

    async def run(self, cause: Envelope, effect: Effect[U, R], *, source: str) -> R | None:
        """Run ``effect`` once per event id; None means the id was already processed.

        Anything raised rolls the whole transaction back, inbox row included, so a redelivery
        tries again from scratch. Inside an event of a batch (``batch``), the effect runs in
        the batch's transaction, in that event's savepoint.
        """
        shared = current_batch_unit()
        if shared is not None:
            # The event's part of its batch's transaction (its savepoint): the same span as on
            # its own, so a trace reads alike either way and the result names it as its writer.
            with span("db.transaction", self._batched):
                return await self.run_in(shared, cause, effect, source=source)  # type: ignore[arg-type]
        with span("db.transaction", self._attributes):
            async with self.uows(f"{self.group} {cause.type}") as uow:
                return await self.run_in(uow, cause, effect, source=source)

    async def run_in(
        self,
        uow: U,  # type: ignore[misc]  # a unit from this transaction's own factory
        cause: Envelope,
        effect: Effect[U, R],
        *,
        source: str,
    ) -> R | None:
        """The same, inside a unit of work the caller holds (a batch runs each event in a
        ``uow.savepoint()`` of one shared transaction)."""
        if not await uow.inbox.claim(self.group, cause):
            return None
        result = await effect(uow)
        if isinstance(result, Result):
            # Its trace set here, inside the event's span: the result names it as its writer.
            await uow.outbox.add(
                envelope_for(result, cause=cause, source=source, extensions=writer_attributes())
            )
        return result

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[EventBatch]:
        """A batch of this group's events in one new unit of work (see service.event_batch):
        committed when the block ends cleanly, rolled back if it raises."""
        async with self.uows(f"{self.group} batch") as uow:
            batch = EventBatch(uow, self.group)
            yield batch
            await batch.finish()
