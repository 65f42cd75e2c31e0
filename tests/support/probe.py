"""A consumer group of the tests' own, run in this process on the real Kafka and PostgreSQL
through the real Delivery (consumers/subscriptions.py wires it exactly as a worker does).

Its handlers are the test's, so a test can see what a delivery promise does to an effect it
can count: how often a handler ran, what it wrote, which dead letters it caused. The group
starts at the topic's end, so it never reads the topic's history.
"""

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker

from adapters.kafka.dead_letters import KafkaDeadLetters
from adapters.kafka.event_reader import topic_partitions
from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWork, PostgresUnitOfWorks
from consumers.delivery import DeadLetters, Delivery, Handler
from consumers.parking import ParkedEvents
from consumers.subscriptions import subscribe
from contracts.events import Event
from runtime.settings import Settings
from service.event_transaction import EventTransaction, Staged
from tests.support.kafka import group_members
from tests.support.waiting import wait_until

# The probe's counter of effects: no unique key on purpose, so an effect run twice shows twice.
EFFECTS_TABLE = "public.tests_probe_effects"


def probe_group() -> str:
    return f"tests-probe-{secrets.token_hex(4)}"


async def start_at_end(settings: Settings, topic: str, group: str) -> None:
    """Commit ``group``'s offsets at the end of every partition of ``topic`` (a logical name: the
    session's namespaced topic)."""
    topic = settings.names.topics.topic(topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        await consumer.commit({tp: await consumer.position(tp) for tp in partitions})
    finally:
        await consumer.stop()


async def ensure_effects_table(pg: asyncpg.Connection) -> None:
    await pg.execute(
        f"CREATE TABLE IF NOT EXISTS {EFFECTS_TABLE} (group_name text NOT NULL,"
        " event_id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )


async def effects(pg: asyncpg.Connection, group: str, event_id: str) -> int:
    return int(
        await pg.fetchval(
            f"SELECT count(*) FROM {EFFECTS_TABLE} WHERE group_name = $1 AND event_id = $2",
            group,
            event_id,
        )
    )


def counting_effect(transaction: EventTransaction[PostgresUnitOfWork]) -> Handler:
    """A handler whose effect is NOT idempotent: each run inserts one more row. Only the inbox
    check of EventTransaction stands between a redelivery and a second row."""

    async def handle(decoded: Any) -> Any:
        env = decoded.envelope

        async def effect(uow: PostgresUnitOfWork) -> Staged:
            await uow.connection.execute(
                f"INSERT INTO {EFFECTS_TABLE} (group_name, event_id) VALUES ($1, $2)",
                transaction.group,
                env.id,
            )
            return Staged(0)

        return await transaction.run(env, effect, source="urn:tests:probe")

    return handle


@contextlib.asynccontextmanager
async def probe(
    settings: Settings,
    topic: str,
    handlers: Callable[[str, asyncpg.Pool], Mapping[type[Event], Handler]],
    *,
    dead_letters: Callable[[DeadLetters], DeadLetters] = lambda d: d,
    parking: Callable[[asyncpg.Pool], ParkedEvents] | None = None,
) -> AsyncIterator[Delivery]:
    """A running probe group on ``topic``; ``handlers(group, pool)`` builds its handlers, and
    ``dead_letters`` may wrap the real dead-letter publisher (e.g. to fail it)."""
    group = probe_group()
    await start_at_end(settings, topic, group)
    pool = await asyncpg.create_pool(settings.pg_dsn.get_secret_value(), min_size=1, max_size=4)
    publisher = KafkaEventPublisher(settings.kafka, client_id=f"{group}-dlq")
    broker = KafkaBroker(settings.kafka_bootstrap, graceful_timeout=10)
    try:
        await publisher.start()
        delivery = subscribe(
            broker,
            settings,
            group=group,
            topic=topic,
            handlers=handlers(group, pool),
            dead_letters=dead_letters(KafkaDeadLetters(publisher)),
            description="tests' probe group",
            parking=parking(pool) if parking else None,
        )
        await broker.start()

        async def assigned() -> bool:
            state, members = await group_members(settings, group)
            return state == "Stable" and sum(members) > 0

        await wait_until(assigned, 60, what=f"{group} to own {topic}'s partitions", interval=0.2)
        yield delivery
    finally:
        await broker.stop()
        await publisher.stop()
        await pool.close()


def transaction(
    pool: asyncpg.Pool, settings: Settings, group: str
) -> EventTransaction[PostgresUnitOfWork]:
    """The EventTransaction a worker builds (runtime/roles.py), for the probe's group."""
    control = settings.names.control_schema
    stores = PostgresStores.of(control, settings.names.tenant_store(), PostgresOutbox(control))
    return EventTransaction(PostgresUnitOfWorks(pool, stores), group)
