"""Reads this deployment's result events (``tenants.events``) without joining a group (CLI, tests)."""

from collections.abc import AsyncIterator
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import UnknownTopicOrPartitionError

from adapters.kafka.config import KafkaConfig
from contracts.codec import InvalidMessage, read_envelope
from contracts.envelope import Envelope


async def topic_partitions(
    consumer: AIOKafkaConsumer, topic: str, *, missing_ok: bool = False
) -> list[TopicPartition]:
    """Every partition of ``topic``, in order, for a started ``consumer`` that assigns instead of
    subscribing. If the topic does not exist yet (no worker has created it): a RuntimeError (the
    client's UnknownTopicOrPartitionError, after its request timeout), or ``[]`` if ``missing_ok``.
    """
    # aiokafka only keeps metadata of subscribed topics, and we assign instead of subscribing;
    # its public API has no "metadata for this topic" call, hence the private one.
    try:
        await consumer._client._wait_on_metadata(topic)
    except UnknownTopicOrPartitionError:
        if missing_ok:
            return []
        raise
    partitions = consumer.partitions_for_topic(topic) or set()
    if not partitions and not missing_ok:
        raise RuntimeError(f"topic {topic} does not exist yet: start a worker first")
    return [TopicPartition(topic, p) for p in sorted(partitions)]


class EventReader:
    """Assigned to every partition; starts at the end (only what happens next) or the beginning."""

    def __init__(self, config: KafkaConfig, *, from_beginning: bool = False) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap,
            group_id=None,
            enable_auto_commit=False,
        )
        self._from_beginning = from_beginning
        self._topic = config.topics.events

    async def __aenter__(self) -> "EventReader":
        await self._consumer.start()
        try:
            assigned = await topic_partitions(self._consumer, self._topic)
        except RuntimeError:
            await self._consumer.stop()
            raise
        self._consumer.assign(assigned)
        if self._from_beginning:
            await self._consumer.seek_to_beginning(*assigned)
        else:
            await self._consumer.seek_to_end(*assigned)
            # Resolve the end offsets now, so events published after this point are never missed.
            for tp in assigned:
                await self._consumer.position(tp)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def __aiter__(self) -> AsyncIterator[Envelope]:
        async for record in self._consumer:
            try:
                yield read_envelope(record.value or b"", record.headers or ())
            except InvalidMessage:
                continue  # not ours to judge here; the producers of tenants.events are us
