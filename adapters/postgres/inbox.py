"""The inbox: an event id is acted on once per consumer group."""

import asyncpg

from contracts.envelope import Envelope
from domain.tenant_ids import quote_ident


class PostgresInbox:
    def __init__(self, control_schema: str) -> None:
        self._table = f"{quote_ident(control_schema)}.inbox"

    async def claim(self, conn: asyncpg.Connection, group: str, envelope: Envelope) -> bool:
        """Insert the inbox row inside the caller's transaction; False means "already done".

        A concurrent claimer of the same id blocks on the primary key until we commit or roll
        back, so exactly one transaction ever sees True.
        """
        row = await conn.fetchval(
            f"INSERT INTO {self._table} (consumer_group, event_id, event_type, tenant_id)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
            group,
            envelope.id,
            envelope.type,
            # Text columns can't hold NUL; such an id is refused by the domain afterwards.
            envelope.subject.replace("\x00", "\ufffd"),
        )
        return row is not None
