"""The inbox: an event id is acted on once per consumer group."""

from collections.abc import Sequence

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

    async def claim_many(
        self, conn: asyncpg.Connection, group: str, envelopes: Sequence[Envelope]
    ) -> set[str]:
        """``claim`` for a batch in ONE statement; the ids claimed now (duplicates, in the table
        or within the batch, are not)."""
        if not envelopes:
            return set()
        # The new ids come back as one array, not a row each: a batch claims hundreds.
        claimed = await conn.fetchval(
            f"WITH claimed AS (INSERT INTO {self._table}"
            " (consumer_group, event_id, event_type, tenant_id)"
            " SELECT $1, e.id, e.type, e.tenant"
            " FROM unnest($2::text[], $3::text[], $4::text[]) AS e(id, type, tenant)"
            " ON CONFLICT DO NOTHING RETURNING event_id)"
            " SELECT array_agg(event_id) FROM claimed",
            group,
            [e.id for e in envelopes],
            [e.type for e in envelopes],
            [e.subject.replace("\x00", "\ufffd") for e in envelopes],
        )
        return set(claimed or ())

    async def release(self, conn: asyncpg.Connection, group: str, event_ids: Sequence[str]) -> None:
        """Delete this transaction's claims of ``event_ids`` (see service.ports.Inbox)."""
        await conn.execute(
            f"DELETE FROM {self._table} WHERE consumer_group = $1 AND event_id = ANY($2::text[])",
            group,
            list(event_ids),
        )
