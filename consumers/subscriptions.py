"""Wires a Delivery to a FastStream subscriber with the settings every group shares."""

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faststream import AckPolicy, StreamMessage
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from consumers.batch_delivery import BatchDelivery, Batches
from consumers.batch_fetch import prompt
from consumers.delivery import DeadLetters, Delivery, Handler, RetryPolicy
from consumers.offsets import FlushOnRevoke
from consumers.parking import ParkedEvents
from contracts.codec import DecodeLimits
from contracts.events import Event
from runtime.settings import Settings


async def keep_binary_headers(
    record: Any, original: Callable[[Any], Awaitable[StreamMessage[Any]]]
) -> StreamMessage[Any]:
    """FastStream decodes every header value as UTF-8 and would drop a record with a binary
    header before our code saw it (Kafka headers are bytes). Parse a sanitised copy, then hand
    on the record exactly as received, so a dead letter keeps the original headers."""
    safe = dataclasses.replace(
        record,
        headers=[(k, v.decode("utf-8", "replace").encode()) for k, v in record.headers or ()],
    )
    if hasattr(record, "consumer"):  # set by FastStream per sub-consumer: acks go through it
        safe.consumer = record.consumer
    message = await original(safe)
    message.raw_message = record
    return message


async def keep_binary_headers_batch(
    records: tuple[Any, ...], original: Callable[[Any], Awaitable[StreamMessage[Any]]]
) -> StreamMessage[Any]:
    """keep_binary_headers for a fetched batch. FastStream's batch parser decodes the headers of
    every record; we read none of its results but the consumer, so it is given only the first
    record, sanitised (cheap), and the message carries the records exactly as received."""
    first = records[0]
    safe = dataclasses.replace(
        first, headers=[(k, v.decode("utf-8", "replace").encode()) for k, v in first.headers or ()]
    )
    message = await original((safe,))
    message.raw_message = records
    return message


async def raw_body(msg: StreamMessage[Any]) -> bytes:
    """Hand the handler the bytes as received: decoding (and its failures) is ours, not FastStream's."""
    return msg.body


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    *,
    group: str,
    topic: str,
    handlers: Mapping[type[Event], Handler],
    dead_letters: DeadLetters,
    description: str,
    parking: ParkedEvents | None = None,
    batches: Batches | None = None,
    batchable: frozenset[type[Event]] = frozenset(),
) -> Delivery:
    """One consumer group on one topic: its Delivery (the same policy for every group) wired to a
    FastStream subscriber. Returns the Delivery (its breaker feeds readiness). With ``parking``,
    records that keep failing wait there (run a consumers.redriver.Redriver beside it).

    ``group`` and ``topic`` are logical names; the subscriber joins this deployment's namespaced
    ones (settings.names), and the Delivery checks events against the logical topic.

    With ``batches`` (and TENANT_CONSUMER_BATCH_MAX_RECORDS > 1) records are consumed in fetched
    batches (consumers/batch_delivery.py): events of the ``batchable`` types share a
    transaction, a savepoint each; every other record takes the per-record path in order."""
    names = settings.names.topics
    topic, group = names.topic(topic), names.group(group)
    delivery = Delivery(
        group=group,
        topics=names,
        handlers=handlers,
        dead_letters=dead_letters,
        retry=RetryPolicy.from_settings(settings),
        limits=DecodeLimits(
            max_bytes=settings.max_message_bytes,
            max_future_s=settings.event_max_future_s,
            max_age_s=settings.event_max_age_s,
        ),
        commit_interval_s=settings.kafka_commit_interval_ms / 1000,
        parking=parking,
    )
    if batches is not None and settings.consumer_batch_max_records > 1:
        _subscribe_batches(broker, settings, topic, delivery, batches, batchable, description)
        return delivery
    subscriber = broker.subscriber(
        topic,
        group_id=delivery.group,
        # MANUAL: Delivery commits after the effect is durable, or seeks back (see delivery.py).
        ack_policy=AckPolicy.MANUAL,
        # N consumers of the group in this process, each owning whole partitions: partitions
        # are processed in parallel, each one strictly in order.
        max_workers=settings.consumer_concurrency,
        parser=keep_binary_headers,
        title=f"{topic}:{delivery.group}",
        **_consumer_options(settings, delivery.offsets, description),
    )

    @subscriber  # type: ignore[untyped-decorator]  # Any: **options defeat its overloads
    async def on_record(body: bytes, msg: KafkaMessage) -> None:
        await delivery(msg)

    return delivery


def _subscribe_batches(
    broker: KafkaBroker,
    settings: Settings,
    topic: str,
    delivery: Delivery,
    batches: Batches,
    batchable: frozenset[type[Event]],
    description: str,
) -> None:
    batch = BatchDelivery(
        delivery,
        batches,
        batchable=frozenset(t.__name__ for t in batchable),
        max_transaction_s=settings.consumer_batch_max_ms / 1000,
    )
    # FastStream's batch subscriber is one consumer (it ignores max_workers), so the group gets
    # N of them in this process, each owning whole partitions as the per-record ones do: a
    # partition's retries never stall another consumer's partitions.
    for n in range(settings.consumer_concurrency):
        # prompt(): the next fetch follows an empty one at once (FastStream's sleeps first).
        subscriber = prompt(broker.subscriber(
            topic,
            batch=True,
            max_records=settings.consumer_batch_max_records,
            batch_timeout_ms=settings.consumer_batch_timeout_ms,
            group_id=delivery.group,
            # MANUAL: BatchDelivery commits per partition once effects are durable, or seeks.
            ack_policy=AckPolicy.MANUAL,
            parser=keep_binary_headers_batch,
            title=f"{topic}:{delivery.group}:{n}",
            **_consumer_options(settings, delivery.offsets, description),
        ))

        @subscriber
        async def on_batch(body: Any, msg: KafkaMessage) -> None:
            await batch(msg.raw_message, msg.consumer)


def _consumer_options(settings: Settings, offsets: Any, description: str) -> dict[str, Any]:
    """What every subscriber of a group shares, per record or in batches: offsets flushed on a
    revoke, our own decoding, the group's timeouts and a fetch that always takes a whole record."""
    return {
        "listener": FlushOnRevoke(offsets),
        "auto_offset_reset": "earliest",
        "decoder": raw_body,
        "max_poll_interval_ms": settings.kafka_max_poll_interval_ms,
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "max_partition_fetch_bytes": settings.kafka_record_bytes,
        "description": description,
    }
