"""Dead letters: the original record, untouched, plus headers saying why and from where."""

from typing import Any

from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics

REASON = "x-dlq-reason"
DETAIL = "x-dlq-detail"
SOURCE_TOPIC = "x-dlq-source-topic"
SOURCE_PARTITION = "x-dlq-source-partition"
SOURCE_OFFSET = "x-dlq-source-offset"
GROUP = "x-dlq-consumer-group"


class KafkaDeadLetters:
    def __init__(self, publisher: KafkaEventPublisher) -> None:
        self._publisher = publisher

    async def send(self, record: Any, *, group: str, reason: str, detail: str) -> None:
        """``record`` is the aiokafka ConsumerRecord as received."""
        headers = [*(record.headers or ()), *_why(record, group, reason, detail)]
        await self._publisher.publish(topics.DLQ, record.key, record.value or b"", headers)


def _why(record: Any, group: str, reason: str, detail: str) -> list[tuple[str, bytes]]:
    return [
        (REASON, reason.encode()),
        (DETAIL, detail[:1000].encode("utf-8", "replace")),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
        (GROUP, group.encode()),
    ]
