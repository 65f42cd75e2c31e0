"""Seeing the private stack from the outside: publishing inputs through faults, following
tenants.events from the beginning, reading whole topics, and metrics/readiness of workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer

from adapters.kafka.event_reader import topic_partitions
from adapters.kafka.producer import KafkaEventPublisher
from contracts import topics
from contracts.envelope import Envelope
from contracts.publish import record_of
from domain.errors import TransientError
from runtime.settings import Settings
from tests.support.waiting import wait_until
from tests.support.workers import http_get


@dataclass
class Sent:
    envelope: Envelope
    at: float  # time.time() of the broker's acknowledgement


class InputPublisher:
    """Publishes input events keyed by subject, one at a time (so per-tenant order holds), and
    keeps retrying one through a broker outage instead of skipping it."""

    def __init__(self, settings: Settings) -> None:
        self._producer = KafkaEventPublisher(settings.kafka, client_id="chaos-tests")
        self.sent: list[Sent] = []
        self.publish_retries = 0

    async def __aenter__(self) -> InputPublisher:
        await wait_until(self._start, 60, what="chaos producer to start", interval=0.5)
        return self

    async def _start(self) -> bool:
        try:
            await self._producer.start()
        except TransientError:
            return False
        return True

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def send(self, env: Envelope, limit_s: float = 120.0) -> Sent:
        await self.raw(*record_of(env).message, limit_s)
        sent = Sent(env, time.time())
        self.sent.append(sent)
        return sent

    async def raw(self, topic: str, key: bytes | None, value: bytes,
                  headers: list[tuple[str, bytes]], limit_s: float = 120.0) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            try:
                await self._producer.publish(topic, key, value, headers)
                return
            except TransientError:
                self.publish_retries += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)


@dataclass
class Seen:
    envelope: Envelope
    timestamp_ms: int


class EventsTail:
    """Every record of tenants.events from the beginning, followed live (survives a broker
    restart: aiokafka reconnects)."""

    def __init__(self, settings: Settings, topic: str = topics.EVENTS) -> None:
        self._settings, self._topic = settings, settings.names.topics.topic(topic)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.seen: list[Seen] = []
        self.by_cause: dict[str, list[Seen]] = defaultdict(list)

    async def __aenter__(self) -> EventsTail:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self._settings.kafka_bootstrap,
                                          group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest")
        await self._consumer.start()
        parts = await topic_partitions(self._consumer, self._topic)
        self._consumer.assign(parts)
        await self._consumer.seek_to_beginning(*parts)
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._task is not None and self._consumer is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._consumer.stop()

    async def _pump(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            try:
                env = Envelope.model_validate_json(record.value or b"")
            except ValueError:
                continue
            seen = Seen(env, record.timestamp)
            self.seen.append(seen)
            if env.causationid:
                self.by_cause[env.causationid].append(seen)

    async def wait_for(self, causes: set[str], limit_s: float, what: str = "results") -> None:
        def missing() -> bool:
            return not [c for c in causes if c not in self.by_cause]

        try:
            await wait_until(missing, limit_s, what=what, interval=0.25)
        except AssertionError:
            left = sorted(c for c in causes if c not in self.by_cause)
            raise AssertionError(f"{len(left)} of {len(causes)} {what} missing after {limit_s}s,"
                                 f" e.g. {left[:5]}") from None


async def read_topic(settings: Settings, topic: str, idle_s: float = 3.0) -> list[Any]:
    """Every record of ``topic`` (logical) up to the end offsets seen at the start."""
    topic = settings.names.topics.topic(topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, topic)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[Any] = []
        remaining = {tp for tp in parts if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=int(idle_s * 1000))
            if not batch:
                break
            for tp, got in batch.items():
                records += [r for r in got if r.offset < ends[tp]]
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def group_lag(settings: Settings, group: str, topic: str) -> int:
    """Sum over partitions of (end offset - committed offset) of ``group`` on ``topic``."""
    topic, group = settings.names.topics.topic(topic), settings.names.topics.group(group)
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        parts = await topic_partitions(consumer, topic)
        ends = await consumer.end_offsets(parts)
        lag = 0
        for tp in parts:
            meta = committed.get(tp)
            lag += ends[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def metric(port: int, name: str, labels: dict[str, str] | None = None) -> float | None:
    """A sample of /metrics (None when absent or unreachable)."""
    try:
        status, body = await http_get(port, "/metrics", limit_s=5)
    except OSError:
        return None
    if status != 200:
        return None
    want = labels or {}
    for line in body.decode().splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        series, _, label_text = head.partition("{")
        if series != name:
            continue
        got = dict(
            (p.split("=", 1)[0], p.split("=", 1)[1].strip('"'))
            for p in label_text.rstrip("}").split(",") if "=" in p
        )
        if all(got.get(k) == v for k, v in want.items()):
            return float(value)
    return None


async def readiness(port: int) -> tuple[int, dict[str, Any]]:
    try:
        status, body = await http_get(port, "/readyz", limit_s=8)
    except (OSError, TimeoutError):
        return 0, {}
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}
