"""Dead letters: list them with their reasons, and replay them to their source topic."""

import contextlib
import json
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.kafka import dead_letters as dlq
from adapters.kafka.producer import KafkaEventPublisher
from runtime.settings import Settings


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def id(self) -> str:
        """``<partition>:<offset>`` in tenants.dlq: stable, and unique even for garbage bytes."""
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str:
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), "")

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith("x-dlq-")]

    def summary(self) -> dict[str, object]:
        event_id = ""
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            event_id = str(json.loads(self.value).get("id", ""))
        return {
            "id": self.id,
            "reason": self.header(dlq.REASON),
            "detail": self.header(dlq.DETAIL),
            "source": f"{self.header(dlq.SOURCE_TOPIC)}/{self.header(dlq.SOURCE_PARTITION)}"
            f"@{self.header(dlq.SOURCE_OFFSET)}",
            "group": self.header(dlq.GROUP),
            "event_id": event_id,
            "key": (self.key or b"").decode(errors="replace"),
            "bytes": len(self.value),
        }


async def read_all(settings: Settings, idle_s: float = 2.0) -> list[DeadLetter]:
    """Everything currently in tenants.dlq (reads up to the end offsets seen at the start)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False
    )
    dlq_topic = settings.names.topics.dlq
    await consumer.start()
    try:
        await consumer._client._wait_on_metadata(dlq_topic)  # see EventReader for why
        parts = [
            TopicPartition(dlq_topic, p)
            for p in sorted(consumer.partitions_for_topic(dlq_topic) or ())
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        letters: list[DeadLetter] = []
        remaining = {tp for tp in parts if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=int(idle_s * 1000))
            if not batch:
                break
            for tp, records in batch.items():
                for r in records:
                    if r.offset < ends[tp]:
                        letters.append(
                            DeadLetter(
                                r.partition, r.offset, r.key, r.value or b"", list(r.headers or ())
                            )
                        )
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return sorted(letters, key=lambda d: (d.partition, d.offset))
    finally:
        await consumer.stop()


async def replay(settings: Settings, ids: list[str] | None) -> list[str]:
    """Republish dead letters (all, or those with the given ids) to their source topics, with
    their original key, value and headers. Returns the ids replayed."""
    letters = [d for d in await read_all(settings) if not ids or d.id in ids]
    publisher = KafkaEventPublisher(settings, client_id="tenantctl-dlq")
    await publisher.start()
    try:
        await publisher.publish_many(
            [
                (d.header(dlq.SOURCE_TOPIC), d.key, d.value, d.original_headers())
                for d in letters
                if d.header(dlq.SOURCE_TOPIC) in settings.names.topics.all  # ours only
            ]
        )
    finally:
        await publisher.stop()
    return [d.id for d in letters]
