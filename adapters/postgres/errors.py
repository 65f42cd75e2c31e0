"""asyncpg errors -> TransientError / PermanentError, decided by SQLSTATE class."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from domain.errors import PermanentError, StatementTimeout, TransientError

# 08 connection, 40 serialization/deadlock, 53 resources, 57 operator intervention (admin
# shutdown, statement timeout), 58 system error; 55P03 lock_not_available (lock_timeout).
_TRANSIENT_CLASSES = {"08", "40", "53", "57", "58"}
_TRANSIENT_STATES = {"55P03", "55006"}
_QUERY_CANCELED = "57014"  # statement_timeout: its own kind, so a use case can tell it apart


# What the driver raises when the connection failed rather than the statement: another one will
# do. InternalClientError: a connection whose protocol state broke when the server went away
# mid-statement (asyncpg reports "another operation is in progress").
_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
)


# Two transactions updated one catalog row (a GRANT, an ALTER ROLE) at once: PostgreSQL fails the
# later instead of queueing it, under the generic internal_error state. Done again, it succeeds.
# Our own set-ups share a lock so as not to meet (control_schema.lock_shared_catalog); this covers
# an operator's statement meeting one of them.
_CONCURRENT_CATALOG_UPDATE = ("XX000", "tuple concurrently updated")


def is_transient(error: BaseException) -> bool:
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", None) or ""
        if (state, str(error)) == _CONCURRENT_CATALOG_UPDATE:
            return True
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    return isinstance(error, _CONNECTION_ERRORS)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise driver errors inside the block as our own, keeping the cause."""
    try:
        yield
    except (TransientError, PermanentError):
        raise
    except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as e:
        detail = f"{what}: {type(e).__name__}: {e}"
        if getattr(e, "sqlstate", None) == _QUERY_CANCELED:
            raise StatementTimeout(detail) from e
        if is_transient(e):
            raise TransientError(detail) from e
        raise PermanentError("database_error", detail) from e
