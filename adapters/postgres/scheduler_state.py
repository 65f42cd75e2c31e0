"""PostgresSchedulerState: what the scheduler remembers (the last window it emitted per kind and
subject) and which tenants are due a scheduled backup.

The scheduler runs these on its leader lock's own session, so a leader that lost its session
cannot advance the state (the fence is the caller's; this adapter only speaks SQL).
"""

# SQL names are quote_ident()-ed from settings, never from input; values are bind parameters.
# ruff: noqa: S608

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from adapters.postgres.errors import translated
from domain.tenant_ids import quote_ident


@dataclass(frozen=True)
class ScheduledTenant:
    """A tenant that scheduled backups cover (active or suspended), with its backup window."""

    tenant_id: str
    plan: str
    created_at: datetime
    last_window: datetime | None  # of the last backup tick emitted; None: never


class PostgresSchedulerState:
    def __init__(self, control_schema: str) -> None:
        control = quote_ident(control_schema)
        self._state, self._tenants = f"{control}.scheduler_state", f"{control}.tenants"

    async def last_window(
        self, conn: asyncpg.Connection, kind: str, subject: str
    ) -> datetime | None:
        """The last window emitted for (kind, subject); None if none was."""
        with translated("scheduler state read"):
            value: datetime | None = await conn.fetchval(
                f"SELECT last_window FROM {self._state} WHERE kind = $1 AND subject = $2",
                kind,
                subject,
            )
        return value

    async def scheduled_tenants(self, conn: asyncpg.Connection, kind: str) -> list[ScheduledTenant]:
        """Active and suspended tenants in id order, each with its last ``kind`` window."""
        with translated("scheduler tenants read"):
            rows = await conn.fetch(
                f"SELECT t.tenant_id, t.plan, t.created_at, s.last_window FROM {self._tenants} t"
                f" LEFT JOIN {self._state} s ON s.kind = $1 AND s.subject = t.tenant_id"
                " WHERE t.status IN ('active', 'suspended') ORDER BY t.tenant_id",
                kind,
            )
        return [
            ScheduledTenant(r["tenant_id"], r["plan"], r["created_at"], r["last_window"])
            for r in rows
        ]

    async def remember(
        self, conn: asyncpg.Connection, latest: dict[tuple[str, str], datetime]
    ) -> None:
        """Record the newest window emitted per (kind, subject); never moves one backwards."""
        with translated("scheduler state write"):
            await conn.execute(
                f"INSERT INTO {self._state} AS st (kind, subject, last_window)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])"
                " ON CONFLICT (kind, subject) DO UPDATE"
                " SET last_window = greatest(st.last_window, excluded.last_window),"
                " updated_at = now()",
                [k for k, _ in latest],
                [s for _, s in latest],
                list(latest.values()),
            )
