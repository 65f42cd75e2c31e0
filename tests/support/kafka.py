"""Publishing test events and observing tenants.events / tenants.dlq from the outside."""

import asyncio
import contextlib
import struct
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from adapters.kafka.event_reader import EventReader, topic_partitions
from adapters.kafka.producer import KafkaEventPublisher
from contracts import codec, topics
from contracts.envelope import Envelope
from contracts.events import TenantRequested
from contracts.publish import record_of
from runtime.settings import Settings
from tests.support.waiting import wait_until

RESULT_TIMEOUT_S = 60.0
Headers = list[tuple[str, bytes]]


def requested(tenant_id: str, plan: str = "free", *, event_id: str | None = None) -> Envelope:
    return codec.envelope_for(
        TenantRequested(tenant_id=tenant_id, plan=plan), event_id=event_id, source="urn:tests"
    )


async def publish(publisher: KafkaEventPublisher, envelope: Envelope) -> None:
    """Publish an input event the way upstream does: keyed by subject, with our headers."""
    await publisher.publish(*record_of(envelope).message)


class ResultLog:
    """Every result on tenants.events from the moment of entry (the reader is at the end first)."""

    def __init__(self, settings: Settings) -> None:
        self._reader = EventReader(settings.kafka)
        self.seen: list[Envelope] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "ResultLog":
        await self._reader.__aenter__()
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._reader.__aexit__(et, e, tb)

    async def _pump(self) -> None:
        async for envelope in self._reader:
            self.seen.append(envelope)

    def caused_by(self, causation_id: str) -> list[Envelope]:
        return [e for e in self.seen if e.causationid == causation_id]

    async def first(self, causation_id: str, limit_s: float = RESULT_TIMEOUT_S) -> Envelope:
        found = await wait_until(
            lambda: self.caused_by(causation_id), limit_s, what=f"result of {causation_id}"
        )
        return found[0]

    async def all_of(
        self, causation_ids: Sequence[str], limit_s: float = RESULT_TIMEOUT_S
    ) -> dict[str, Envelope]:
        wanted = set(causation_ids)

        def complete() -> dict[str, Envelope] | None:
            got = {e.causationid: e for e in self.seen if e.causationid in wanted}
            return got if len(got) == len(wanted) else None

        return await wait_until(complete, limit_s, what=f"{len(wanted)} results")


class TopicTail:
    """Raw records of ``topic`` from the moment of entry, on every partition, without a group."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._topic = settings.names.topics.topic(topic)  # a logical name: the session's topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False
        )
        self.records: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "TopicTail":
        await self._consumer.start()
        assigned = await topic_partitions(self._consumer, self._topic)
        self._consumer.assign(assigned)
        await self._consumer.seek_to_end(*assigned)
        for tp in assigned:
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._consumer.stop()

    async def _pump(self) -> None:
        async for record in self._consumer:
            self.records.append(record)

    def with_key(self, key: bytes) -> list[Any]:
        return [r for r in self.records if r.key == key]


def keys_covering(partitions: int, prefix: str) -> list[str]:
    """Tenant ids ``<prefix><n>`` whose keys land on every partition at least once."""
    partitioner = DefaultPartitioner()
    all_partitions = list(range(partitions))
    chosen: dict[int, str] = {}
    n = 0
    while len(chosen) < partitions:
        tenant_id = f"{prefix}{n}"
        p = partitioner(topics.partition_key(tenant_id), all_partitions, all_partitions)
        chosen.setdefault(p, tenant_id)
        n += 1
    return list(chosen.values())


async def group_members(settings: Settings, group: str) -> tuple[str, list[int]]:
    """(state, partitions assigned to each member) of a consumer group (a logical name: the
    session's namespaced group is described)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([settings.names.topics.group(group)])
        description = response.to_object()["groups"][0]
    finally:
        await admin.close()
    return description["state"], [
        _assigned_count(m["member_assignment"]) for m in description["members"]
    ]


def _assigned_count(assignment: bytes) -> int:
    """Partitions in a ConsumerProtocol member assignment (version, [topic, [partition]])."""
    if len(assignment) < 6:
        return 0
    offset, total = 2, 0
    (n_topics,) = struct.unpack_from(">i", assignment, offset)
    offset += 4
    for _ in range(n_topics):
        (name_len,) = struct.unpack_from(">h", assignment, offset)
        offset += 2 + name_len
        (n_parts,) = struct.unpack_from(">i", assignment, offset)
        offset += 4 + 4 * n_parts
        total += n_parts
    return total
