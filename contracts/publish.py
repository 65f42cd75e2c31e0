"""Publish an event with aiokafka or confluent-kafka, in either content mode; and the one rule
that turns an envelope into the Kafka record carrying it (``record_of``), which the service's own
publishers use too.

Neither client is imported here: the helpers take the caller's producer (duck-typed by the
protocols below), so the package depends on neither, and each is an optional extra
(``tenant-service-contracts[aiokafka]``, ``[confluent]``).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.codec import ContentMode, encode_record, envelope_for, kafka_headers
from contracts.envelope import Envelope
from contracts.events import EVENT_TYPES, Event
from contracts.topics import Topics, partition_key

KafkaHeaders = list[tuple[str, bytes]]


class PublishError(Exception):
    """The broker did not acknowledge the record. Publish again with the same ``event_id`` so
    the service sees one request, not two."""

    def __init__(self, event_id: str, detail: str) -> None:
        super().__init__(f"event {event_id}: {detail}")
        self.event_id = event_id


@dataclass(frozen=True)
class Record:
    """One Kafka record: the topic and key follow from the event, never from the caller."""

    topic: str
    key: bytes
    value: bytes
    headers: KafkaHeaders
    envelope: Envelope

    @property
    def message(self) -> tuple[str, bytes, bytes, KafkaHeaders]:
        """(topic, key, value, headers): what a producer sends."""
        return self.topic, self.key, self.value, self.headers


def record_of(
    envelope: Envelope, *, mode: ContentMode = "structured", namespace: str = ""
) -> Record:
    """The record that carries ``envelope``: on its type's topic, keyed by its subject, value and
    headers in ``mode``. The topic is physical for ``namespace``; with none it is the logical
    name, which the service's own publisher maps to its deployment's."""
    value, headers = encode_record(envelope, mode)
    return Record(
        topic=Topics(namespace).topic(EVENT_TYPES[envelope.type].topic),
        key=partition_key(envelope.subject),
        value=value,
        headers=kafka_headers(headers),
        envelope=envelope,
    )


def record_for(
    event: Event,
    *,
    source: str,
    mode: ContentMode = "structured",
    correlation_id: str | None = None,
    event_id: str | None = None,
    namespace: str = "",
) -> Record:
    """The record that carries ``event`` from producer ``source`` (a URI naming your service).

    Without ``correlation_id`` the event correlates with itself (its own ``id``); without
    ``event_id`` a fresh UUID is used. Reuse one ``event_id`` when you retry a publish, so the
    service treats the retry as the same request. ``namespace`` is the deployment's
    ``TENANT_NAMESPACE`` (its topics are ``<namespace>.tenants.*``); empty for none."""
    envelope = envelope_for(event, correlation_id=correlation_id, event_id=event_id, source=source)
    return record_of(envelope, mode=mode, namespace=namespace)


class AIOKafkaProducerLike(Protocol):
    """What ``aiokafka.AIOKafkaProducer`` offers that we use."""

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        partition: int | None = ...,
        timestamp_ms: int | None = ...,
        headers: Sequence[tuple[str, bytes]] | None = ...,
    ) -> Any: ...


async def publish_aiokafka(
    producer: AIOKafkaProducerLike,
    event: Event,
    *,
    source: str,
    mode: ContentMode = "structured",
    correlation_id: str | None = None,
    event_id: str | None = None,
    namespace: str = "",
) -> Envelope:
    """Publish ``event`` with a started ``AIOKafkaProducer`` and wait for the broker's ack.

    Returns the envelope sent (its ``id`` is what the service's results name as ``causationid``).
    The producer's own errors (``aiokafka.errors.KafkaError``) propagate unchanged."""
    record = record_for(
        event,
        source=source,
        mode=mode,
        correlation_id=correlation_id,
        event_id=event_id,
        namespace=namespace,
    )
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)
    return record.envelope


class ConfluentProducerLike(Protocol):
    """What ``confluent_kafka.Producer`` offers that we use."""

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...

    def flush(self, timeout: float = ...) -> int: ...


def publish_confluent(
    producer: ConfluentProducerLike,
    event: Event,
    *,
    source: str,
    mode: ContentMode = "structured",
    correlation_id: str | None = None,
    event_id: str | None = None,
    timeout_s: float = 30.0,
    namespace: str = "",
) -> Envelope:
    """Publish ``event`` with a ``confluent_kafka.Producer`` and block until it is delivered.

    Raises ``PublishError`` when delivery fails or is not confirmed within ``timeout_s``.
    Blocking: call it from a thread, not from an event loop."""
    record = record_for(
        event,
        source=source,
        mode=mode,
        correlation_id=correlation_id,
        event_id=event_id,
        namespace=namespace,
    )
    outcome: list[Any] = []
    on_delivery: Callable[[Any, Any], None] = lambda err, _msg: outcome.append(err)  # noqa: E731
    producer.produce(
        record.topic,
        value=record.value,
        key=record.key,
        headers=record.headers,
        on_delivery=on_delivery,
    )
    left = producer.flush(timeout_s)
    if left or not outcome:
        raise PublishError(record.envelope.id, f"not confirmed within {timeout_s:g}s")
    if outcome[0] is not None:
        raise PublishError(record.envelope.id, f"not delivered: {outcome[0]}")
    return record.envelope
