"""The consumer floor: plain aiokafka + asyncpg, no framework, measured in the run's namespace.

N ``TenantRequested`` records (the codec's own bytes, key = tenant id, as the broker benchmark
publishes them) go to a fresh topic ``<namespace>.floor.<hex>`` with the deployment's partition
count, then are consumed from the beginning once per mode and repetition, each in a fresh
consumer group (max_poll_records 500, offsets committed after every ``getmany``):

- ``consume``: getmany + json.loads, nothing else;
- ``per record``: one transaction per record, the inbox claim ``PostgresInbox.claim`` runs
  (INSERT … ON CONFLICT DO NOTHING RETURNING), one connection;
- ``per record ×3``: the same over 3 connections, partitions spread over them (as our 3
  consumers per process own whole partitions);
- ``per batch``: one transaction per fetched partition batch, ``INSERT … SELECT … unnest($n)
  ON CONFLICT DO NOTHING``;
- ``per batch, duplicates``: the same again in the same group: every id already present.

The inbox is a copy of the control schema's (``LIKE inbox INCLUDING ALL``: same keys and
indexes), dropped at the end. Modes alternate within each repetition, so the machine's load
drifts over all of them alike. Time runs from the first fetched batch to the last commit.
"""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import common, tenants
from bench.common import Row
from contracts import codec, topics
from contracts.events import TenantRequested
from domain.tenant_ids import quote_ident

MODES = ("consume", "per record", "per record ×3", "per batch", "per batch, duplicates")
POLL = 500
_CLAIM = ("INSERT INTO {t} (consumer_group, event_id, event_type, tenant_id)"
          " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1")
_CLAIM_MANY = ("INSERT INTO {t} (consumer_group, event_id, event_type, tenant_id)"
               " SELECT $1, i, e, s FROM unnest($2::text[], $3::text[], $4::text[]) AS u(i, e, s)"
               " ON CONFLICT DO NOTHING RETURNING event_id")

Batch = list[tuple[str, str, str]]  # (event id, type, subject) of one partition's fetch
Handler = Callable[[dict[int, Batch]], Awaitable[None]]


def records(n: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of ``n`` TenantRequested over 5,000 tenants, as the product encodes them."""
    out = []
    for i in range(n):
        env = codec.envelope_for(TenantRequested(tenant_id=f"floor_{i % 5000:05d}", plan="free"),
                                 source="urn:bench")
        out.append((topics.partition_key(env.subject), codec.encode(env)))
    return out


async def _produce(bootstrap: str, topic: str, partitions: int, n: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key) for key, value in records(n)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, n: int, handle: Handler) -> float:
    """events/s of one pass over the topic in a fresh group, ``handle`` per getmany."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"{topic}-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, max_poll_records=POLL)
    await consumer.start()
    try:
        seen, start = 0, 0.0
        while seen < n:
            fetched = await consumer.getmany(timeout_ms=1000)
            if not fetched:
                continue
            start = start or time.perf_counter()
            decoded: dict[int, Batch] = {}
            for tp, msgs in fetched.items():
                evs = [json.loads(m.value) for m in msgs]
                decoded[tp.partition] = [(e["id"], e["type"], e["subject"]) for e in evs]
                seen += len(msgs)
            await handle(decoded)
            await consumer.commit()
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()


def _handlers(pool: asyncpg.Pool, table: str, rep: int) -> dict[str, Handler]:
    one, many = _CLAIM.format(t=table), _CLAIM_MANY.format(t=table)
    batch_group = f"batch-{rep}"  # shared by "per batch" and its duplicate pass

    async def nothing(_: dict[int, Batch]) -> None:
        return None

    async def per_record(conn: asyncpg.Connection, group: str, batch: Batch) -> None:
        for event_id, type_, subject in batch:
            async with conn.transaction():
                await conn.fetchval(one, group, event_id, type_, subject)

    async def single(fetched: dict[int, Batch]) -> None:
        async with pool.acquire() as conn:
            for batch in fetched.values():
                await per_record(conn, f"record-{rep}", batch)

    async def three(fetched: dict[int, Batch]) -> None:
        async def lane(k: int) -> None:
            async with pool.acquire() as conn:
                for p, batch in fetched.items():
                    if p % 3 == k:
                        await per_record(conn, f"record3-{rep}", batch)
        await asyncio.gather(*(lane(k) for k in range(3)))

    async def batched(fetched: dict[int, Batch]) -> None:
        async with pool.acquire() as conn:
            for batch in fetched.values():
                ids, types, subjects = (list(c) for c in zip(*batch, strict=True))
                async with conn.transaction():
                    await conn.fetch(many, batch_group, ids, types, subjects)

    return {"consume": nothing, "per record": single, "per record ×3": three,
            "per batch": batched, "per batch, duplicates": batched}


@dataclass(frozen=True)
class Floor:
    """A filled floor topic and its inbox copy (see ``filled``)."""

    bootstrap: str
    topic: str
    n: int
    pool: asyncpg.Pool
    table: str

    async def run(self, mode: str, rep: int) -> float:
        """events/s of one pass in ``mode``; ``rep`` names its inbox groups (a new ``rep`` for
        a pass that must find the inbox empty of its ids)."""
        return await _consume(self.bootstrap, self.topic, self.n,
                              _handlers(self.pool, self.table, rep)[mode])


@contextlib.asynccontextmanager
async def filled(n: int) -> AsyncIterator[Floor]:
    """A fresh topic of ``n`` records and an empty inbox copy, both dropped at the end."""
    settings = common.settings()
    await tenants.ensure_control(settings)
    control = quote_ident(settings.names.control_schema)
    table = f"{control}.bench_floor_inbox"
    topic = f"{settings.namespace}.floor.{uuid.uuid4().hex[:6]}"
    boot = settings.kafka_bootstrap
    pool = await asyncpg.create_pool(common.dsn(), min_size=3, max_size=3)
    try:
        await pool.execute(f"CREATE TABLE IF NOT EXISTS {table} (LIKE {control}.inbox INCLUDING ALL)")
        await _produce(boot, topic, settings.kafka_partitions, n)
        yield Floor(boot, topic, n, pool, table)
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {table}")
        await pool.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=boot)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


async def measure(n: int) -> dict[str, list[float]]:
    """events/s per mode, REPS repetitions each."""
    figures: dict[str, list[float]] = {m: [] for m in MODES}
    async with filled(n) as floor:
        for rep in range(common.REPS):
            for mode in MODES:
                figures[mode].append(await floor.run(mode, rep))
            print(f"  floor rep {rep}: " + ", ".join(f"{m} {v[-1]:.0f}/s"
                                                     for m, v in figures.items()), flush=True)
    return figures


NOTES = {
    "consume": "getmany + json.loads only",
    "per record": "one transaction per record (inbox claim), 1 connection",
    "per record ×3": "one transaction per record, 3 connections, partitions spread over them",
    "per batch": "one transaction per fetched partition batch, INSERT … SELECT unnest ON CONFLICT",
    "per batch, duplicates": "the same, every id already present (the duplicate path)",
}


def rows(n: int, figures: dict[str, list[float]], ours: list[float], ours_size: str,
         apart: list[float] | None = None) -> list[Row]:
    """The floor rows, then ours (the broker round trip of the same run) against each of them,
    and the same bursts with the relay in a process of its own against the batched floor."""
    size = f"{n} records"
    out = [Row("consumer floor", size, "events/s", v, notes=NOTES[m] + " (aiokafka + asyncpg)")
           for m, v in figures.items()]
    if not ours:
        return out
    for mode, goal in (("per record", ""), ("per record ×3", ""),
                       ("per batch", "≥ 0.25 × batched floor")):
        row = Row("consumer path ÷ floor", f"ours {ours_size} vs {mode}", "events/s", ours,
                  figures[mode], f"floor: {mode}", goal=goal,
                  notes="ours: no-op TenantRequested burst drained (bench/run broker), same run")
        if goal:
            row.met = (row.ratio or 0.0) >= 0.25
        out.append(row)
    if apart:
        row = Row("consumer path ÷ floor", f"ours {ours_size}, relay apart, vs per batch",
                  "events/s", apart, figures["per batch"], "floor: per batch",
                  notes="ours: the same bursts, the relay in a process of its own, same run")
        out.append(row)
    return out
