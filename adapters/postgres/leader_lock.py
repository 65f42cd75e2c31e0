"""A session-level advisory lock that elects one leader, on a connection that cannot outlive
its client by more than ``session_timeout_s``.

The lock lives as long as the backend that took it. A client that vanishes without closing its
socket (host gone, network cut) would otherwise leave the backend, and the lock, for hours. So
the lock session is told to end itself once it is idle for ``session_timeout_s``
(``idle_session_timeout``, which works even when something still answers TCP for the dead
client) and to probe its peer with TCP keepalives over the same span (a host gone outright).
The leader keeps the session busy by checking, every few seconds, that its backend still holds
the lock (``holds``), with a client-side timeout: a leader that cannot reach its session steps
down well before the server ends that session and a standby can take the lock.

Timings, all from ``session_timeout_s`` (T): check every T/5 with a T/3 timeout, so a cut leader
gives up by about 0.55 T (later if the cut hits a statement of its own on the session: that one
fails after the command timeout), while the server frees the lock by about T after the last
statement.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from adapters.postgres.errors import translated

# A bigint advisory key shows in pg_locks as (classid = high 32 bits, objid = low 32 bits,
# objsubid = 1); objsubid 2 would be the two-int4 form of the same numbers.
_HOLDS_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_backend_pid() AND objsubid = 1"
    " AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid)"
)


def check_interval_s(session_timeout_s: float) -> float:
    """How often a leader checks its lock session."""
    return session_timeout_s / 5


def check_timeout_s(session_timeout_s: float) -> float:
    """How long a leader waits for that check before it steps down."""
    return session_timeout_s / 3


class PostgresLeaderLock:
    """One advisory lock id on one dedicated connection; not shared between tasks except
    through ``session()``, which serialises the owner's statements with the checks."""

    def __init__(
        self,
        dsn: str,
        lock_id: int,
        *,
        session_timeout_s: float,
        application_name: str,
        statement_timeout_ms: int,
    ) -> None:
        self._dsn, self.lock_id = dsn, lock_id
        self._timeout = session_timeout_s
        self._app, self._statement_timeout_ms = application_name, statement_timeout_ms
        self._conn: asyncpg.Connection | None = None
        self._guard = asyncio.Lock()

    async def acquire(self) -> bool:
        """Try the lock once (connecting first if needed); True if this session holds it."""
        with translated("leader lock"):
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            async with self._guard:
                got = await self._conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", self.lock_id, timeout=self._timeout
                )
        return bool(got)

    async def holds(self) -> bool:
        """Does our backend still hold the lock? False if the session is gone, or does not answer
        within the check timeout. Waits first for a statement the owner is running on the
        session (``session()``): that one is bounded by the connection's command timeout, and a
        slow statement must not read as a lost session."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            async with self._guard:
                return bool(
                    await conn.fetchval(
                        _HOLDS_SQL, self.lock_id, timeout=check_timeout_s(self._timeout)
                    )
                )
        except Exception:  # any failure of the session (incl. asyncpg's internal ones) is a loss
            return False

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[asyncpg.Connection]:
        """The lock's own connection, for statements that must fail once leadership is lost
        (they run on the session that holds the lock: a natural fence)."""
        if self._conn is None or self._conn.is_closed():
            raise asyncpg.ConnectionDoesNotExistError("leader lock session is closed")
        async with self._guard:
            yield self._conn

    async def listen(self, channel: str, callback: Callable[..., Any]) -> None:
        """LISTEN on the lock session (notifications stop when leadership does)."""
        with translated("leader lock listen"):
            async with self.session() as conn:
                await conn.add_listener(channel, callback)

    async def release(self) -> None:
        """End the session, which frees the lock; a session we cannot reach is dropped."""
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), check_timeout_s(self._timeout))
        except Exception:  # unreachable or broken: the server ends it by its own timeouts
            conn.terminate()

    async def _connect(self) -> asyncpg.Connection:
        idle_ms = str(int(self._timeout * 1000))
        keepalive = max(1, int(self._timeout))
        return await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            # The owner's statements (scheduler state) end client-side too, as pooled ones do.
            command_timeout=self._statement_timeout_ms / 1000 + 5,
            server_settings={
                "application_name": self._app,
                "statement_timeout": str(self._statement_timeout_ms),
                # The server ends a session its leader stopped checking (client paused, or
                # cut off behind something that still ACKs TCP)...
                "idle_session_timeout": idle_ms,
                "idle_in_transaction_session_timeout": idle_ms,
                # ...and notices a peer host that is gone: idle + count x interval ~= T.
                "tcp_keepalives_idle": str(max(1, keepalive // 2)),
                "tcp_keepalives_interval": str(max(1, keepalive // 6)),
                "tcp_keepalives_count": "3",
                "tcp_user_timeout": idle_ms,
            },
        )
