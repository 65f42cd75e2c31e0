"""Offset commits, batched: the offsets of records whose effects are durable, committed to Kafka
every few milliseconds instead of one synchronous round trip per record.

Only offsets of records that were handled (their transaction committed, or they were
dead-lettered) are ever committed, per partition and explicitly — never the consumer's fetch
position — so a record still in flight can't be skipped. A crash loses at most the last interval's
commits: those records are redelivered and the inbox absorbs them.
"""

import asyncio
import contextlib
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

log = structlog.get_logger(__name__)


class DurableOffsets:
    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._pending: dict[Any, dict[TopicPartition, int]] = {}  # consumer -> next offsets
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def mark(self, consumer: Any, topic: str, partition: int, offset: int) -> None:
        """Record ``offset`` as handled; commits at once when batching is off (interval 0)."""
        self._pending.setdefault(consumer, {})[TopicPartition(topic, partition)] = offset + 1
        if self._interval <= 0:
            await self.flush()
        elif self._task is None:
            self._task = asyncio.create_task(self._run())

    async def flush(self) -> None:
        async with self._lock:
            pending, self._pending = self._pending, {}
            for consumer, offsets in pending.items():
                try:
                    await consumer.commit(offsets)
                except Exception as e:  # rebalanced or stopping: the inbox absorbs redelivery
                    log.warning("offset_commit_failed", error=repr(e), partitions=len(offsets))

    async def stop(self) -> None:
        """Commit what is pending; later marks commit at once (used while shutting down)."""
        self._interval = 0
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._pending:
                await self.flush()


class FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits handled offsets before partitions move to another member."""

    def __init__(self, offsets: DurableOffsets) -> None:
        self._offsets = offsets

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._offsets.flush()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None
