"""The unit of work every handler shares: inbox row + effect + outbox row, one transaction."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from adapters.postgres.errors import translated
from adapters.postgres.inbox import PostgresInbox
from adapters.postgres.outbox import PostgresOutbox
from adapters.trace_context import span
from contracts.codec import envelope_for
from contracts.envelope import Envelope
from contracts.events import Result


@dataclass(frozen=True)
class Accepted:
    """The event was taken on as a job; its result comes later, through the outbox."""

    job_id: str


@dataclass(frozen=True)
class Staged:
    """The effect wrote its results to the outbox itself: many of them (e.g. one per tenant),
    each with a deterministic id, in the same transaction."""

    results: int


Effect = Callable[[asyncpg.Connection], Awaitable[Result | Accepted | Staged]]
# What a handler answers; None means the inbox had the event already.
Outcome = Result | Accepted | Staged | None


class EventTransaction:
    def __init__(
        self, pool: asyncpg.Pool, inbox: PostgresInbox, outbox: PostgresOutbox, group: str
    ) -> None:
        self._pool = pool
        self._inbox = inbox
        self._outbox = outbox
        self.group = group

    async def run(self, cause: Envelope, effect: Effect, *, source: str) -> Outcome:
        """Run ``effect`` once per event id; None means the id was already processed.

        Anything raised rolls the whole transaction back, inbox row included, so a redelivery
        tries again from scratch.
        """
        attributes = {"db.system.name": "postgresql", "tenant.group": self.group}
        with span("db.transaction", attributes), translated(f"{self.group} {cause.type}"):
            async with self._pool.acquire() as conn, conn.transaction():
                if not await self._inbox.claim(conn, self.group, cause):
                    return None
                result = await effect(conn)
                if isinstance(result, Result):
                    await self._outbox.add(conn, envelope_for(result, cause=cause, source=source))
                return result
