"""Publishing request events: the one path tenantctl and the HTTP API share into Kafka.

Each request carries the W3C context of the span publishing it (the API's command span): one
trace from the caller through the consumer to the result. A request published with no span
current (tenantctl) starts its own trace."""

from collections.abc import Sequence

from adapters.kafka.producer import KafkaEventPublisher
from adapters.trace_context import publish_spans, stamp
from contracts.envelope import Envelope
from contracts.publish import record_of
from contracts.tracecontext import trace_of


async def publish_requests(publisher: KafkaEventPublisher, envelopes: Sequence[Envelope]) -> None:
    """Publish ``envelopes`` to their types' topics, keyed by subject, in order (one batch).

    A request already stamped keeps its context, so publishing it again (the API's recovery of
    an operation whose publish may have failed) sends the same bytes under the same id."""
    messages = [record_of(e if trace_of(e)[0] is not None else stamp(e)).message
                for e in envelopes]
    with publish_spans([(topic, value, headers) for topic, _, value, headers in messages]):
        await publisher.publish_many(messages)
