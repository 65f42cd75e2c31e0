"""Publishing request events: the one path tenantctl and the HTTP API share into Kafka."""

from collections.abc import Sequence

from adapters.kafka.producer import KafkaEventPublisher
from contracts import codec, topics
from contracts.envelope import Envelope
from contracts.events import EVENT_TYPES


async def publish_requests(publisher: KafkaEventPublisher, envelopes: Sequence[Envelope]) -> None:
    """Publish ``envelopes`` to their types' topics, keyed by subject, in order (one batch)."""
    await publisher.publish_many(
        [
            (
                EVENT_TYPES[e.type].topic,
                topics.partition_key(e.subject),
                codec.encode(e),
                [(k, v.encode()) for k, v in codec.headers_for(e).items()],
            )
            for e in envelopes
        ]
    )
