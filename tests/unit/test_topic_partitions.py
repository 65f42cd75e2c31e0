"""topic_partitions on a fake consumer: every partition in order, and a topic that does not exist
yet either raises (the default) or, with ``missing_ok``, has no partitions."""

from typing import cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import UnknownTopicOrPartitionError

from adapters.kafka.event_reader import topic_partitions


class FakeClient:
    """The private metadata call: raises as aiokafka's does once its request timeout passes."""

    def __init__(self, known: dict[str, set[int]]) -> None:
        self.known = known

    async def _wait_on_metadata(self, topic: str) -> set[int]:
        if topic not in self.known:
            raise UnknownTopicOrPartitionError()
        return self.known[topic]


class FakeConsumer:
    def __init__(self, known: dict[str, set[int]]) -> None:
        self._client = FakeClient(known)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self._client.known.get(topic)


def consumer(**known: set[int]) -> AIOKafkaConsumer:
    return cast(AIOKafkaConsumer, FakeConsumer(known))


async def test_every_partition_in_order() -> None:
    parts = await topic_partitions(consumer(events={2, 0, 1}), "events")
    assert parts == [TopicPartition("events", p) for p in (0, 1, 2)]


async def test_a_missing_topic_raises_by_default() -> None:
    with pytest.raises(RuntimeError):
        await topic_partitions(consumer(events={0}), "dlq")


async def test_a_missing_topic_has_no_partitions_when_missing_ok() -> None:
    assert await topic_partitions(consumer(events={0}), "dlq", missing_ok=True) == []


async def test_a_topic_without_partitions_is_missing() -> None:
    with pytest.raises(RuntimeError, match="does not exist yet"):
        await topic_partitions(consumer(dlq=set()), "dlq")
    assert await topic_partitions(consumer(dlq=set()), "dlq", missing_ok=True) == []
