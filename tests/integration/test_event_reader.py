"""Reading tenants.events without a group on the real broker: every partition of the topic, and
the bench's ResultCount (end offsets only while it times) counting and naming what landed."""

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from adapters.kafka.event_reader import topic_partitions
from adapters.kafka.producer import KafkaEventPublisher
from bench.workers import ResultCount
from runtime.settings import Settings
from tests.support.kafka import publish, requested
from tests.support.stack import SessionWorker, TenantIds

pytestmark = pytest.mark.stack


async def test_every_partition_of_the_topic_in_order(
    settings: Settings, session_worker: SessionWorker
) -> None:
    topic = settings.kafka.topics.events
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    count = len(described["partitions"])
    assert count >= 1, f"{topic} has no partitions"
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        assert await topic_partitions(consumer, topic) == [
            TopicPartition(topic, p) for p in range(count)
        ]
        assert consumer.assignment() == set(), "finding the partitions must not assign them"
    finally:
        await consumer.stop()


async def test_result_count_counts_what_landed_since_entry(
    settings: Settings,
    session_worker: SessionWorker,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
) -> None:
    envelope = requested(tenants.new())
    async with ResultCount(settings) as results:
        await publish(publisher, envelope)
        await results.wait_count(1, timeout=60)
        assert envelope.id in await results.causations()


async def test_a_topic_not_created_yet(settings: Settings) -> None:
    # Topics are never auto-created here, so asking about one leaves no trace; a short request
    # timeout bounds how long the client looks for it before giving up.
    topic = f"{settings.kafka.topics.events}.never-created"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, request_timeout_ms=2000
    )
    await consumer.start()
    try:
        assert await topic_partitions(consumer, topic, missing_ok=True) == []
        with pytest.raises(RuntimeError):
            await topic_partitions(consumer, topic)
        assert topic not in await consumer.topics(), f"asking about {topic} created it"
    finally:
        await consumer.stop()
