"""The publisher heals itself after Kafka was unreachable when it (re)started its producer.

Found by the chaos suite: after a broker restart the relay renewed its producer while Kafka was
still down; aiokafka's producer whose start() failed has no brokers and no metadata task, so the
relay's next send waited for metadata forever and /readyz stayed 503 until the worker restarted.

Kafka's outage is simulated by a gate in front of the real broker: bootstrap goes through the
gate (closed: connection refused; open: forwarded to the broker), and the broker's advertised
address serves everything after bootstrap.
"""

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from adapters.kafka.producer import KafkaEventPublisher
from domain.errors import TransientError
from runtime.settings import Settings
from tests.support.kafka import TopicTail
from tests.support.tcp_gate import TcpGate
from tests.support.waiting import wait_until
from tests.support.workers import free_port

pytestmark = pytest.mark.stack

TOPIC = "tenant-service.test.publisher-recovery"
CALL_LIMIT_S = 30.0  # far above a healthy call; a hang is what the test is about


@pytest.fixture
async def scratch_topic(settings: Settings) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    return TOPIC


@pytest.fixture
async def gate(settings: Settings) -> AsyncIterator[TcpGate]:
    host, port = settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)
    g = TcpGate(free_port(), (host, int(port)))
    yield g
    await g.close()


async def test_a_publisher_that_could_not_start_recovers_when_kafka_answers(
    settings: Settings, scratch_topic: str, gate: TcpGate
) -> None:
    gated = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{gate.port}"})
    publisher = KafkaEventPublisher(gated.kafka, client_id="test-publisher-recovery")
    key = f"recovery-{secrets.token_hex(4)}".encode()
    try:
        # Kafka unreachable: every call fails fast and says so, none hangs
        with pytest.raises(TransientError, match="kafka producer start"):
            await asyncio.wait_for(publisher.start(), CALL_LIMIT_S)
        with pytest.raises(TransientError):
            await asyncio.wait_for(publisher.ping(), CALL_LIMIT_S)
        with pytest.raises(TransientError):
            await asyncio.wait_for(
                publisher.publish(scratch_topic, key, b"during the outage", []), CALL_LIMIT_S
            )

        await gate.open()
        async with TopicTail(settings, scratch_topic) as tail:
            # the first call after recovery works: no restart, no stale producer
            await asyncio.wait_for(
                publisher.publish(scratch_topic, key, b"after the outage", []), CALL_LIMIT_S
            )
            await asyncio.wait_for(publisher.ping(), CALL_LIMIT_S)
            await wait_until(lambda: tail.with_key(key), 30, what="the record on the topic")
            assert [r.value for r in tail.with_key(key)] == [b"after the outage"]
        await publisher.stop()
        # stopped means stopped: a late call during shutdown must not start a new producer
        with pytest.raises(TransientError, match="stopped"):
            await asyncio.wait_for(publisher.publish(scratch_topic, key, b"late", []), 5)
    finally:
        await publisher.stop()
