"""A batch of events in one transaction, each event in a savepoint of its own.

The inbox rows of the whole batch are claimed with one statement, and the result rows are written
to the outbox with one statement when the batch ends, in event order. Each event runs in a
savepoint: if it raises, what it wrote is undone, its inbox row is released (so the event can be
tried again on its own, from scratch) and its staged results are dropped, while the others go
on and commit together. Inbox, effect and outbox of each committed event still stand or fall
together: they are in the same transaction.

A handler needs no change: while ``EventBatch.event`` is open, ``EventTransaction.run`` finds the
batch's unit (``current_batch_unit``) and runs the effect there instead of opening its own.
Time limits an effect sets (``limit_time``, a migration's lock and statement timeouts) bound that
event alone: they are lifted at the end of its savepoint, before the next event runs.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any

from adapters.trace_context import stamp
from contracts.envelope import Envelope
from service.unit_of_work import UnitOfWork


class _BatchInbox:
    """The inbox as one event of the batch sees it: its id was claimed already by the batch."""

    def __init__(self, batch: "EventBatch") -> None:
        self._batch = batch

    async def claim(self, group: str, envelope: Envelope) -> bool:
        if group == self._batch.group and envelope.id in self._batch.claimed:
            self._batch.claimed.discard(envelope.id)  # a second claim of the id is a duplicate
            self._batch.consumed.add(envelope.id)
            return True
        return await self._batch.uow.inbox.claim(group, envelope)

    async def claim_many(self, group: str, envelopes: Sequence[Envelope]) -> set[str]:
        return await self._batch.uow.inbox.claim_many(group, envelopes)

    async def release(self, group: str, event_ids: Sequence[str]) -> None:
        await self._batch.uow.inbox.release(group, event_ids)


class _BatchOutbox:
    """Results staged by one event, written with the batch's (only if the event commits)."""

    def __init__(self) -> None:
        self.staged: list[Envelope] = []

    async def add(self, envelope: Envelope) -> None:
        await self.add_many([envelope])

    async def add_many(self, envelopes: Sequence[Envelope]) -> None:
        # Stamped now, inside the event's span: the batch writes them later, outside of it.
        self.staged.extend(stamp(e) for e in envelopes)


class _EventUnit:
    """The unit of work one event of a batch is handed: the batch's, with its own inbox and
    outbox views; its time limits last until the end of the event (see ``EventBatch.event``)."""

    def __init__(self, batch: "EventBatch") -> None:
        self._uow = batch.uow
        self.inbox = _BatchInbox(batch)
        self.outbox = _BatchOutbox()
        self.limited = False  # the event set time limits, to be lifted when it ends

    @property
    def tenants(self) -> Any:
        return self._uow.tenants

    @property
    def jobs(self) -> Any:
        return self._uow.jobs

    @property
    def rollouts(self) -> Any:
        return self._uow.rollouts

    @property
    def keys(self) -> Any:
        return self._uow.keys

    @property
    def warm_pool(self) -> Any:
        return self._uow.warm_pool

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        return self._uow.savepoint()

    async def limit_time(self, *, lock_timeout_ms: int, statement_timeout_ms: int) -> None:
        self.limited = True
        await self._uow.limit_time(
            lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms
        )

    async def end_time_limits(self) -> None:
        await self._uow.end_time_limits()
        self.limited = False


_CURRENT: ContextVar[_EventUnit | None] = ContextVar("event_batch_unit", default=None)


def current_batch_unit() -> UnitOfWork | None:
    """The unit of the batch event being handled in this context, if any."""
    return _CURRENT.get()  # type: ignore[return-value]  # structurally a UnitOfWork


class EventBatch:
    """One open transaction shared by a batch of events of one consumer group.

    Use: ``new = await batch.claim(envelopes)`` once, then each new event inside
    ``async with batch.event(envelope): await handler(...)``; ``skip`` the claimed events not
    run after all. ``finish`` (called by the owner before commit) releases the inbox rows of the
    events that failed or were skipped and writes the staged results."""

    def __init__(self, uow: UnitOfWork, group: str) -> None:
        self.uow, self.group = uow, group
        self.claimed: set[str] = set()  # claimed by the batch, not yet run
        self.consumed: set[str] = set()  # claimed and run (their claim was used)
        self._release: list[str] = []
        self._outbox: list[Envelope] = []

    async def claim(self, envelopes: Sequence[Envelope]) -> set[str]:
        """Claim every id in one statement; answers the ids new to the inbox (the others, and
        an id's second occurrence, were processed already)."""
        new = await self.uow.inbox.claim_many(self.group, envelopes)
        self.claimed |= new
        return new

    @asynccontextmanager
    async def event(self, envelope: Envelope) -> AsyncIterator[None]:
        """One event's savepoint; a raise undoes the event alone (and propagates)."""
        unit = _EventUnit(self)
        token = _CURRENT.set(unit)
        try:
            async with self.uow.savepoint():
                yield
                if unit.limited:
                    # A released savepoint keeps its SET LOCALs (a rolled back one undoes
                    # them): lifted here, inside it, they never bound the next event.
                    await unit.end_time_limits()
        except BaseException:
            if envelope.id in self.consumed or envelope.id in self.claimed:
                self.consumed.discard(envelope.id)
                self.claimed.discard(envelope.id)
                self._release.append(envelope.id)
            raise
        finally:
            _CURRENT.reset(token)
        self._outbox.extend(unit.outbox.staged)

    def skip(self, event_ids: Sequence[str]) -> None:
        """These claimed events will not run in this batch: give their inbox rows back."""
        for event_id in event_ids:
            if event_id in self.claimed:
                self.claimed.discard(event_id)
                self._release.append(event_id)

    async def finish(self) -> None:
        """Before commit: release unused claims, then write every staged result in one go."""
        self.skip(list(self.claimed))
        if self._release:
            await self.uow.inbox.release(self.group, self._release)
        if self._outbox:
            await self.uow.outbox.add_many(self._outbox)
