"""Dead letters: list them, replay them to their source topic, and spot a request's own.

The DLQ is streamed, never loaded whole. ``replay --all`` replays each dead letter once: what it
has replayed is the committed offset of the consumer group ``tenantctl-dlq-replay`` on
tenants.dlq (durable in Kafka, committed batch by batch after the batch was published).
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from adapters.kafka import dead_letters as dlq
from adapters.kafka.event_reader import topic_partitions
from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from runtime.settings import Settings

_BATCH = 500  # records fetched, published and committed together


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, r: ConsumerRecord[Any, Any]) -> "DeadLetter":
        return cls(r.partition, r.offset, r.key, r.value or b"", list(r.headers or ()))

    @property
    def id(self) -> str:
        """``<partition>:<offset>`` in tenants.dlq: stable, and unique even for garbage bytes."""
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str:
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), "")

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith("x-dlq-")]

    def event_id(self) -> str:
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            return str(json.loads(self.value).get("id", ""))
        return ""

    def summary(self) -> dict[str, object]:
        return {
            "id": self.id,
            "reason": self.header(dlq.REASON),
            "detail": self.header(dlq.DETAIL),
            "source": f"{self.header(dlq.SOURCE_TOPIC)}/{self.header(dlq.SOURCE_PARTITION)}"
            f"@{self.header(dlq.SOURCE_OFFSET)}",
            "group": self.header(dlq.GROUP),
            "event_id": self.event_id(),
            "key": (self.key or b"").decode(errors="replace"),
            "bytes": len(self.value),
        }


@dataclass(frozen=True)
class DeadLettered:
    """What ``--wait`` answers when the request itself became a dead letter."""

    letter: DeadLetter
    topic: str = topics.DLQ  # the deployment's (namespaced) dead-letter topic

    @property
    def summary(self) -> dict[str, object]:
        return self.letter.summary()

    def describe(self) -> str:
        s = self.summary
        return (
            f"{s['reason']} ({s['detail']}), {self.topic} entry {s['id']};"
            f" after a fix: tenantctl dlq replay --id {s['id']}"
        )


def parse_id(text: str) -> tuple[int, int]:
    """``partition:offset`` -> (partition, offset); ValueError says what is wrong."""
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise ValueError(
            f"dead letter id {text!r} is not partition:offset (see tenantctl dlq list)"
        )
    return int(partition), int(offset)


async def _consumer(settings: Settings, group_id: str | None) -> AIOKafkaConsumer:
    """A consumer assigned every partition of tenants.dlq (none while the topic is missing)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    dlq_topic = settings.names.topics.dlq
    await consumer.start()
    try:
        # A missing topic means no dead letter yet, ever: nothing to assign.
        consumer.assign(await topic_partitions(consumer, dlq_topic, missing_ok=True))
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def _stream(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
) -> AsyncIterator[list[DeadLetter]]:
    """Batches from each partition's position up to ``ends`` (the end seen at the start)."""
    remaining = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=2000, max_records=_BATCH)
        if not batch:
            break  # the broker answers nothing up to a known end: stop rather than hang
        letters = [DeadLetter.of(r) for tp, rs in batch.items() for r in rs if r.offset < ends[tp]]
        for tp in batch:
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
        yield letters


async def read_all(settings: Settings) -> list[DeadLetter]:
    """Everything currently in tenants.dlq (up to the end offsets seen at the start)."""
    consumer = await _consumer(settings, None)
    try:
        parts = list(consumer.assignment())
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        letters = [d async for batch in _stream(consumer, ends) for d in batch]
        return sorted(letters, key=lambda d: (d.partition, d.offset))
    finally:
        await consumer.stop()


@dataclass
class Replayed:
    replayed: list[str]
    skipped: list[str]  # source topic unknown: nowhere to send it back


async def replay_ids(settings: Settings, ids: list[str]) -> Replayed:
    """Republish the dead letters with these ids (KeyError names one that does not exist)."""
    wanted = [parse_id(i) for i in ids]
    consumer = await _consumer(settings, None)
    republisher = _Republisher(settings)
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        letters = []
        for partition, offset in wanted:
            tp = TopicPartition(settings.names.topics.dlq, partition)
            if offset >= ends.get(tp, 0):
                raise KeyError(f"{partition}:{offset}")
            consumer.seek(tp, offset)
            batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
            record = next((r for r in batch.get(tp, []) if r.offset == offset), None)
            if record is None:  # below the log start: deleted by retention
                raise KeyError(f"{partition}:{offset}")
            letters.append(DeadLetter.of(record))
        done = Replayed([], [])
        await republisher.send(letters, done)
        return done
    finally:
        await republisher.close()
        await consumer.stop()


async def replay_new(settings: Settings, on_batch: Callable[[int], None]) -> Replayed:
    """Republish every dead letter not replayed by an earlier ``replay --all``, streaming."""
    consumer = await _consumer(settings, settings.names.topics.group(topics.DLQ_REPLAY_GROUP))
    republisher = _Republisher(settings)
    done = Replayed([], [])
    try:
        parts = list(consumer.assignment())
        for tp in parts:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        ends = await consumer.end_offsets(parts)
        async for batch in _stream(consumer, ends):
            await republisher.send(batch, done)
            # Committed only after the batch is on its source topics: a crash in between
            # replays that batch again (consumers are idempotent), never skips it.
            last: dict[TopicPartition, int] = {}
            for d in batch:
                tp = TopicPartition(settings.names.topics.dlq, d.partition)
                last[tp] = max(last.get(tp, -1), d.offset + 1)
            if last:
                await consumer.commit(last)
            on_batch(len(done.replayed))
        return done
    finally:
        await republisher.close()
        await consumer.stop()


class _Republisher:
    """Sends dead letters back to their source topics with one producer, started on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._publisher: KafkaEventPublisher | None = None

    async def send(self, letters: list[DeadLetter], into: Replayed) -> None:
        ours = self._settings.names.topics.all
        sendable = [d for d in letters if d.header(dlq.SOURCE_TOPIC) in ours]
        into.skipped.extend(d.id for d in letters if d not in sendable)
        if not sendable:
            return
        if self._publisher is None:
            self._publisher = KafkaEventPublisher(self._settings.kafka, client_id="tenantctl-dlq")
            await self._publisher.start()
        await self._publisher.publish_many(
            [(d.header(dlq.SOURCE_TOPIC), d.key, d.value, d.original_headers()) for d in sendable]
        )
        into.replayed.extend(d.id for d in sendable)

    async def close(self) -> None:
        if self._publisher is not None:
            await self._publisher.stop()


class DeadLetterWatch:
    """tenants.dlq from now on (positioned on entry), to spot the dead letter of one event."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> "DeadLetterWatch":
        self._consumer = await _consumer(self._settings, None)
        parts = list(self._consumer.assignment())
        await self._consumer.seek_to_end(*parts)
        for tp in parts:  # resolve now, so a letter written after this point is never missed
            await self._consumer.position(tp)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def find(self, event_id: str) -> DeadLettered:
        """The dead letter whose event id is ``event_id`` (waits until it appears)."""
        assert self._consumer is not None
        if not self._consumer.assignment():
            await asyncio.Event().wait()  # no DLQ topic yet: nothing can be found, ever
        async for record in self._consumer:
            letter = DeadLetter.of(record)
            if letter.event_id() == event_id:
                return DeadLettered(letter, self._settings.names.topics.dlq)
        raise AssertionError("dead letter stream ended")
