"""PostgresParkedEvents: the parking lot of the consumers, one ordered queue per group and tenant.

Two replicas share it safely: a claim locks the tenant's oldest parked row (FOR UPDATE SKIP
LOCKED) for as long as the event is being handled, and only a tenant's oldest row can be
claimed, so one process at a time drives a tenant's parked events, in order. A process that dies
mid-claim loses its connection and with it the lock; the row is claimable again.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg

from adapters.postgres.errors import translated
from consumers.parking import Claim, ParkedEvent, ParkedRecord, RecordAt
from domain.tenant_ids import quote_ident


def _spans(entries: Sequence[tuple[str, str, RecordAt]]) -> dict[tuple[str, int], tuple[int, int]]:
    """The lowest and highest offset of the entries, per (topic, partition)."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for _, _, at in entries:
        low, high = spans.get((at.topic, at.partition), (at.offset, at.offset))
        spans[(at.topic, at.partition)] = (min(low, at.offset), max(high, at.offset))
    return spans


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd")  # text columns can't hold NUL


class PostgresParkedEvents:
    def __init__(self, pool: asyncpg.Pool, control_schema: str) -> None:
        self._pool = pool
        self._table = f"{quote_ident(control_schema)}.parked_events"

    async def park(
        self,
        group: str,
        tenant_id: str,
        event_id: str,
        record: ParkedRecord,
        *,
        attempts: int,
        age_s: float,
        delay_s: float,
        error: str,
    ) -> bool:
        """Park ``record`` (committed when this returns); False when it was parked already."""
        with translated(f"park {record.topic}:{record.partition}:{record.offset}"):
            seq = await self._pool.fetchval(
                f"INSERT INTO {self._table} (consumer_group, tenant_id, event_id, topic,"
                " kafka_partition, kafka_offset, record_key, record_value, header_names,"
                " header_values, attempts, first_failed_at, next_attempt_at, last_error)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
                " now() - make_interval(secs => $12), now() + make_interval(secs => $13), $14)"
                " ON CONFLICT (consumer_group, topic, kafka_partition, kafka_offset, event_id)"
                " DO NOTHING RETURNING seq",
                group,
                _text(tenant_id),
                _text(event_id),
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                [_text(k) for k, _ in record.headers],
                [v for _, v in record.headers],
                attempts,
                age_s,
                delay_s,
                error[:1000],
            )
        return seq is not None

    async def holds(self, group: str, tenant_id: str, event_id: str, record: ParkedRecord) -> bool:
        """True while the tenant has parked events here, or when this record was parked before."""
        with translated("parked events lookup"):
            return bool(
                await self._pool.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {self._table} WHERE consumer_group = $1"
                    "   AND tenant_id = $2 AND status = 'parked')"
                    f" OR EXISTS (SELECT 1 FROM {self._table} WHERE consumer_group = $1"
                    "   AND topic = $3 AND kafka_partition = $4 AND kafka_offset = $5"
                    "   AND event_id = $6)",
                    group,
                    _text(tenant_id),
                    record.topic,
                    record.partition,
                    record.offset,
                    _text(event_id),
                )
            )

    async def holding(
        self, group: str, entries: Sequence[tuple[str, str, RecordAt]]
    ) -> set[int]:
        """``holds`` for a batch: the positions of the entries that must wait.

        A batch is up to a thousand records and the parking lot is nearly always empty of
        anything that concerns them. So a first statement asks only whether anything could:
        a parked event in the group, or a parked row within the offsets the batch spans of
        each of its partitions (one range per partition, not a row per record). Only then
        does the second look every entry up. The first is true whenever the second finds an
        entry, so the answer is the same; the common batch sends a few values, not five
        arrays of a thousand, and the database probes nothing per record."""
        if not entries:
            return set()
        spans = _spans(entries)
        with translated("parked events lookup"):
            async with self._pool.acquire() as conn:  # one connection for both statements
                if not await conn.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {self._table} WHERE consumer_group = $1"
                    "   AND status = 'parked')"
                    " OR EXISTS (SELECT 1 FROM unnest($2::text[], $3::int[], $4::bigint[],"
                    f" $5::bigint[]) AS s(topic, part, low, high) JOIN {self._table} p"
                    "   ON p.consumer_group = $1 AND p.topic = s.topic"
                    "   AND p.kafka_partition = s.part AND p.kafka_offset BETWEEN s.low AND s.high)",
                    group,
                    [topic for topic, _ in spans],
                    [partition for _, partition in spans],
                    [low for low, _ in spans.values()],
                    [high for _, high in spans.values()],
                ):
                    return set()
                rows = await conn.fetch(
                    "SELECT e.n FROM unnest($2::text[], $3::text[], $4::text[], $5::int[],"
                    " $6::bigint[]) WITH ORDINALITY AS e(tenant, id, topic, part, off, n)"
                    f" WHERE EXISTS (SELECT 1 FROM {self._table} p WHERE p.consumer_group = $1"
                    "   AND p.tenant_id = e.tenant AND p.status = 'parked')"
                    f" OR EXISTS (SELECT 1 FROM {self._table} p WHERE p.consumer_group = $1"
                    "   AND p.topic = e.topic AND p.kafka_partition = e.part"
                    "   AND p.kafka_offset = e.off AND p.event_id = e.id)",
                    group,
                    [_text(t) for t, _, _ in entries],
                    [_text(i) for _, i, _ in entries],
                    [r.topic for _, _, r in entries],
                    [r.partition for _, _, r in entries],
                    [r.offset for _, _, r in entries],
                )
        return {int(r["n"]) - 1 for r in rows}

    @asynccontextmanager
    async def claim_due(self, group: str) -> AsyncIterator[Claim | None]:
        """The due head of one tenant's queue, row-locked until the block ends (see module doc)."""
        with translated("claim parked event"):
            conn = await self._pool.acquire()
        try:
            with translated("claim parked event"):
                tx = conn.transaction()
                await tx.start()
                row = await conn.fetchrow(
                    "SELECT p.*, extract(epoch FROM now() - p.first_failed_at)::float8 AS age_s"
                    f" FROM {self._table} p WHERE p.consumer_group = $1 AND p.status = 'parked'"
                    " AND p.next_attempt_at <= now()"
                    # only a tenant's oldest parked event: its later ones wait behind it, and a
                    # replica that skips the locked head finds nothing else of that tenant
                    f" AND NOT EXISTS (SELECT 1 FROM {self._table} q"
                    "   WHERE q.consumer_group = p.consumer_group AND q.tenant_id = p.tenant_id"
                    "   AND q.status = 'parked' AND q.seq < p.seq)"
                    " ORDER BY p.next_attempt_at LIMIT 1 FOR UPDATE OF p SKIP LOCKED",
                    group,
                )
            claim = None if row is None else _PostgresClaim(conn, self._table, row)
            try:
                yield claim
            except BaseException:
                await tx.rollback()
                raise
            with translated("settle parked event"):
                if claim is not None:
                    await claim.write()
                await tx.commit()
        finally:
            await self._pool.release(conn)


class _PostgresClaim:
    def __init__(self, conn: asyncpg.Connection, table: str, row: asyncpg.Record) -> None:
        self._conn, self._table, self._seq = conn, table, row["seq"]
        self.event = ParkedEvent(
            tenant_id=row["tenant_id"],
            record=ParkedRecord(
                topic=row["topic"],
                partition=row["kafka_partition"],
                offset=row["kafka_offset"],
                key=row["record_key"],
                value=row["record_value"],
                headers=tuple(zip(row["header_names"], row["header_values"], strict=True)),
            ),
            attempts=row["attempts"],
            handler_errors=row["handler_errors"],
            age_s=row["age_s"],
        )
        self._update: tuple[str, tuple[object, ...]] | None = None

    async def done(self) -> None:
        self._finish("done")

    async def dead_lettered(self) -> None:
        self._finish("dead_lettered")

    def _finish(self, status: str) -> None:
        self._update = ("status = $2, finished_at = now()", (status,))

    async def retry_later(self, delay_s: float, error: str, *, handler_error: bool) -> None:
        counter = "handler_errors" if handler_error else "attempts"
        self._update = (
            f"{counter} = {counter} + 1, last_error = $2,"
            " next_attempt_at = now() + make_interval(secs => $3)",
            (error[:1000], delay_s),
        )

    async def write(self) -> None:
        """Called by claim_due inside the claim's transaction, after the block ended."""
        if self._update is None:
            return  # nothing decided: the row stays as it was
        assignments, args = self._update
        await self._conn.execute(
            f"UPDATE {self._table} SET {assignments} WHERE seq = $1", self._seq, *args
        )
