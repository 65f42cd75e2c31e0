"""The outbox: result events written with the effect, read back by the relay.

A row is written once. Its id waits in ``outbox_pending`` (queued by a trigger on insert, control
migration 0015) until the relay has published it and deletes the id: marking the row itself sent
was an UPDATE that copied the whole row, six times the cost of the delete.
"""

from collections.abc import Sequence
from typing import NamedTuple

import asyncpg

# pydantic's JSON (Rust) for the headers: a fifth of json.dumps' time per row, and the outbox
# writes and reads one row per result. jsonb keeps the same value from either.
from pydantic_core import from_json, to_json

from contracts import codec, topics
from contracts.envelope import Envelope
from domain.tenant_ids import quote_ident

NOTIFY_CHANNEL = "tenant_outbox"


class OutboxRow(NamedTuple):  # a tuple: the relay reads a thousand of them a batch
    id: int
    event_id: str
    topic: str
    key: bytes
    event_type: str
    payload: bytes
    headers: list[tuple[str, bytes]]  # as Kafka carries them (codec.kafka_headers)


class PostgresOutbox:
    def __init__(self, control_schema: str, content_mode: codec.ContentMode = "structured") -> None:
        schema = quote_ident(control_schema)
        self._table, self._pending = f"{schema}.outbox", f"{schema}.outbox_pending"
        self._mode: codec.ContentMode = content_mode

    async def add(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """Stage ``envelope`` for publication; same id twice is one row (results have stable ids)."""
        await self.add_many(conn, [envelope])

    async def add_many(self, conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        """Stage ``envelopes`` in the caller's transaction, in the order given, with ONE
        statement whatever their number (a metrics tick over 10,000 tenants stages 10,000).
        They are written as given: whoever made them stamped them with their trace."""
        if not envelopes:
            return
        records = [codec.encode_record(e, self._mode) for e in envelopes]
        # The notification rides in the insert's statement (one round trip, not two): it wakes
        # the relay at commit time, and not at all on rollback. The relay also polls, so a lost
        # notification only adds delay.
        await conn.execute(
            f"WITH staged AS (INSERT INTO {self._table}"
            " (event_id, topic, key, event_type, payload, headers)"
            " SELECT e.id, $1, e.key, e.type, e.payload, e.headers::jsonb"
            " FROM unnest($2::text[], $3::bytea[], $4::text[], $5::bytea[], $6::text[])"
            " WITH ORDINALITY AS e(id, key, type, payload, headers, n)"
            " ORDER BY e.n ON CONFLICT (event_id) DO NOTHING)"
            " SELECT pg_notify($7, '')",
            topics.EVENTS,
            [e.id for e in envelopes],
            [topics.partition_key(e.subject) for e in envelopes],
            [e.type for e in envelopes],
            [value for value, _ in records],
            [to_json(headers).decode() for _, headers in records],
            NOTIFY_CHANNEL,
        )

    async def unsent(
        self, conn: asyncpg.Connection, limit: int, skip: Sequence[int] = ()
    ) -> list[OutboxRow]:
        """The first ``limit`` unsent rows in id order, leaving out the ids in ``skip`` (a batch
        published and still being marked sent). Exactly those ids: a row that committed late
        with an id among them must not be held back behind its tenant's later rows."""
        # The queue's ids first, then their rows by the outbox's key: as a join, statistics
        # taken while the queue was long made the planner merge it with the whole outbox (every
        # row kept for the retention period, read on every poll).
        rows = await conn.fetch(
            "SELECT o.id, o.event_id, o.topic, o.key, o.event_type, o.payload, o.headers"
            f" FROM {self._table} o WHERE o.id = ANY(ARRAY("
            f"SELECT p.id FROM {self._pending} p"
            # NOT IN a subquery is a hashed subplan: one probe per row, whatever the batch size.
            " WHERE p.id NOT IN (SELECT unnest($2::bigint[]))"
            " ORDER BY p.id LIMIT $1)) ORDER BY o.id",
            limit,
            list(skip),
        )
        # Fields by position and the headers made Kafka's here, in one pass: a relay batch is
        # a thousand rows, and lookups by name and a second pass showed in its profile.
        return [
            OutboxRow(
                r[0],
                r[1],
                r[2],
                bytes(r[3]),
                r[4],
                bytes(r[5]),
                codec.kafka_headers(from_json(r[6])),
            )
            for r in rows
        ]

    async def mark_sent(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        await conn.execute(f"DELETE FROM {self._pending} WHERE id = ANY($1::bigint[])", ids)

    async def backlog(self, conn: asyncpg.Connection) -> tuple[int, float]:
        """(unsent rows, age in seconds of the queue's head). The head is the oldest unsent row
        by staging order (ids are taken as rows are staged); reading its age by key keeps this
        one lookup however long the queue is, as it is after an outage of the broker."""
        row = await conn.fetchrow(
            f"SELECT (SELECT count(*) FROM {self._pending}) AS n,"
            " COALESCE(EXTRACT(EPOCH FROM now() - ("
            f"SELECT o.created_at FROM {self._table} o"
            f" WHERE o.id = (SELECT min(p.id) FROM {self._pending} p))), 0) AS age"
        )
        assert row is not None
        return int(row["n"]), float(row["age"])
