"""KafkaEventPublisher: the one way this service writes to Kafka.

A raw aiokafka producer (not FastStream's publisher) because dead letters must carry the
original headers byte for byte and outbox rows carry headers we chose; FastStream adds its own.
"""

import asyncio
import contextlib
import random
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from adapters.kafka.config import KafkaConfig
from domain.errors import TransientError

Headers = Sequence[tuple[str, bytes]]

# A send waits while its partition's batch is full, until the sender has taken that batch, and
# the idempotent producer has one request per partition in flight: at aiokafka's 16 KiB, a relay
# batch of 1,000 results took ~40 round trips in a row. 512 KiB takes it in one per partition
# and stays under any stock broker's message.max.bytes (1 MiB), for topics we did not create.
BATCH_BYTES = 512 * 1024
# Hashes of this many keys (tenant ids) are kept before the memo starts again.
_HASHES_KEPT = 65_536


class KafkaEventPublisher:
    """Publishes to this deployment's topics: callers name a topic logically (``tenants.events``,
    an event class's ``topic``) and it is sent to its namespaced name (config.topics); a name
    that is not one of ours (a dead letter's physical source topic) is sent as given."""

    def __init__(self, config: KafkaConfig, *, client_id: str = "tenant-service") -> None:
        self._config, self._client_id = config, client_id
        self._topics = config.topics
        self._producer = self._new_producer()
        self._started = False  # only a producer whose start() succeeded is ever used
        self._stopped = False
        self._lock = asyncio.Lock()
        self._hashes: dict[bytes, int] = {}  # key -> its murmur2 hash (see _partition)

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._config.bootstrap,
            client_id=self._client_id,
            # Idempotence removes duplicates from the producer's own retries and keeps per-key
            # order across them; acks=all is implied.
            enable_idempotence=True,
            request_timeout_ms=self._config.request_timeout_ms,
            max_request_size=self._config.record_bytes,
            # No linger: a send waits for nothing but the broker. publish_many queues all its
            # records before it awaits any, so they still go out in one request per partition.
            linger_ms=0,
            max_batch_size=min(self._config.record_bytes, BATCH_BYTES),
        )

    async def _ensure_started(self) -> AIOKafkaProducer:
        """The current producer, started; TransientError while the cluster is unreachable.

        aiokafka's start() that fails to bootstrap leaves a producer with no brokers and no
        metadata task: its send() then waits for metadata forever and every refresh logs
        "Unable to update metadata from []". So a failed start throws that producer away and
        the next call starts a fresh one.
        """
        async with self._lock:
            if self._started:
                return self._producer
            if self._stopped:  # shutting down: a late call must not start a new producer
                raise TransientError("kafka publisher stopped")
            try:
                await self._producer.start()
            except KafkaError as e:
                await self._replace()
                raise TransientError(f"kafka producer start: {e}") from e
            self._started = True
            return self._producer

    async def _renew(self) -> None:
        """A failed send can leave the idempotent producer in a state it never leaves (after a
        broker restart: OutOfOrderSequenceNumber on every later send). The next call starts a
        fresh one, with a new producer id; the caller republishes, and duplicates carry the
        same event ids."""
        async with self._lock:
            await self._replace()

    async def _replace(self) -> None:
        """Swap in a fresh, unstarted producer and close the old one (caller holds the lock)."""
        old, self._producer, self._started = self._producer, self._new_producer(), False
        with contextlib.suppress(Exception):
            await old.stop()

    async def start(self) -> None:
        await self._ensure_started()

    async def stop(self) -> None:
        async with self._lock:
            self._started, self._stopped = False, True
            await self._producer.stop()

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        """Send and wait for the broker's acknowledgement."""
        await self.publish_many([(topic, key, value, headers)])

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes | None, bytes, Headers]]
    ) -> None:
        """Send a batch (kept in order per partition) and wait until all are acknowledged.

        The records are laid into aiokafka batches, one per partition (more when one fills), and
        each is queued whole: a ``send`` per record looked the topic's partitions up, hashed
        the key and queued the record on its own, a third of the relay's own time. Partitions
        are chosen as aiokafka's (and Java's) default partitioner chooses them."""
        producer = await self._ensure_started()
        try:
            partitions: dict[str, list[int]] = {}
            builders: dict[tuple[str, int], BatchBuilder] = {}
            futures = []
            for topic, key, value, headers in messages:
                physical = self._topics.topic(topic)
                if physical not in partitions:
                    partitions[physical] = sorted(await producer.partitions_for(physical))
                if key is None:  # as aiokafka: any partition that has a leader now
                    available = producer.client.cluster.available_partitions_for_topic(physical)
                    tp = (physical, random.choice(sorted(available or ()) or partitions[physical]))
                else:
                    tp = (physical, self._partition(key, partitions[physical]))
                listed = list(headers)
                builder = builders.get(tp)
                if builder is None:
                    builder = builders[tp] = producer.create_batch()
                if builder.append(timestamp=None, key=key, value=value, headers=listed) is None:
                    # Full: queue it, and start the next (an empty batch takes any record).
                    futures.append(await producer.send_batch(builder, tp[0], partition=tp[1]))
                    builder = builders[tp] = producer.create_batch()
                    builder.append(timestamp=None, key=key, value=value, headers=listed)
            for (topic, partition), builder in builders.items():
                futures.append(await producer.send_batch(builder, topic, partition=partition))
            for future in futures:
                await future
        except KafkaError as e:
            await self._renew()
            raise TransientError(f"kafka publish: {type(e).__name__}: {e}") from e

    def _partition(self, key: bytes, partitions: list[int]) -> int:
        """aiokafka's DefaultPartitioner for a key: murmur2 of it (in pure Python there, so the
        hashes of recent keys are kept)."""
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= _HASHES_KEPT:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return partitions[hashed % len(partitions)]

    async def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions (from the producer's metadata, refreshed when missing)."""
        producer = await self._ensure_started()
        try:
            return set(await producer.partitions_for(self._topics.topic(topic)))
        except KafkaError as e:
            raise TransientError(f"kafka metadata: {e}") from e

    async def ping(self) -> None:
        """A real metadata round trip to the cluster (cached metadata would hide an outage)."""
        producer = await self._ensure_started()
        try:
            await producer.client.fetch_all_metadata()
        except KafkaError as e:
            raise TransientError(f"kafka metadata: {e}") from e
