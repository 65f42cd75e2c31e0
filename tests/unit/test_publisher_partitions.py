"""The publisher picks a keyed record's partition as aiokafka's (and Java's) default partitioner does:
a tenant's results land where any Kafka client would put that key."""

import random

from aiokafka.partitioner import DefaultPartitioner

from adapters.kafka.config import KafkaConfig
from adapters.kafka.producer import KafkaEventPublisher
from contracts.topics import Topics


def _publisher() -> KafkaEventPublisher:
    return KafkaEventPublisher(
        KafkaConfig(bootstrap="127.0.0.1:9", request_timeout_ms=1000, record_bytes=1 << 20,
                    topics=Topics()),
    )


async def test_a_keyed_record_goes_where_the_default_partitioner_puts_it() -> None:
    publisher, reference, rng = _publisher(), DefaultPartitioner(), random.Random(7)
    for count in (1, 2, 3, 6, 7, 12, 50):
        partitions = list(range(count))
        for _ in range(300):
            key = rng.randbytes(rng.randint(0, 40))
            expected = reference(key, partitions, partitions)
            assert publisher._partition(key, partitions) == expected
            assert publisher._partition(key, partitions) == expected  # remembered, the same
