"""The unit of work: one transaction, and the stores already bound to it.

A use case opens one, reads and writes through ``uow.tenants``, ``uow.jobs``, ``uow.outbox``...
(no connection in sight), and leaves the block: a clean exit commits, anything raised rolls
everything back, so the inbox row, the effect and the outbox row stand or fall together.

``savepoint()`` nests a smaller unit inside: what it wrote is undone if its block raises, while
the enclosing transaction goes on. One event's DDL failure becomes a *Failed result that way,
and a batch of events can later share one transaction with a savepoint per event.
"""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol, Self

from service.ports import BackupKeys, Inbox, Jobs, Outbox, Rollouts, TenantRegistry, WarmPool

__all__ = ["UnitOfWork", "UnitOfWorkFactory"]


class UnitOfWork(Protocol):
    # Read-only: an implementation may hand out its own store types.
    @property
    def tenants(self) -> TenantRegistry: ...
    @property
    def jobs(self) -> Jobs: ...
    @property
    def inbox(self) -> Inbox: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def rollouts(self) -> Rollouts: ...
    @property
    def keys(self) -> BackupKeys: ...
    @property
    def warm_pool(self) -> WarmPool: ...

    async def __aenter__(self) -> Self:
        """Begin the transaction and bind the stores to it."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Commit on a clean exit; roll back if anything was raised, and re-raise it (a driver
        error as the domain's TransientError/PermanentError)."""

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A nested unit: undone alone if its block raises (the error still propagates)."""

    async def limit_time(self, *, lock_timeout_ms: int, statement_timeout_ms: int) -> None:
        """Bound each lock wait and each statement for the rest of this transaction: a lock wait
        past it is a TransientError, a statement past it a StatementTimeout."""

    async def end_time_limits(self) -> None:
        """Lift what ``limit_time`` set: later statements of this transaction run under the
        connection's own limits again (a batch does so after each event that set them)."""


# ``uows(what)``: a new, not yet begun, unit of work; ``what`` names it in translated errors.
UnitOfWorkFactory = Callable[[str], UnitOfWork]
