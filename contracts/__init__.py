"""The wire: CloudEvents envelope, one model per event, topic names and the key rule."""

from contracts import events, topics
from contracts._version import __version__
from contracts.codec import (
    Decoded,
    InvalidMessage,
    decode,
    encode,
    envelope_for,
    headers_for,
)
from contracts.envelope import CONTENT_TYPE, Envelope, result_event_id
from contracts.publish import PublishError, publish_aiokafka, publish_confluent, record_for

__all__ = [
    "CONTENT_TYPE",
    "Decoded",
    "Envelope",
    "InvalidMessage",
    "PublishError",
    "decode",
    "encode",
    "envelope_for",
    "events",
    "headers_for",
    "publish_aiokafka",
    "publish_confluent",
    "record_for",
    "result_event_id",
    "topics",
    "__version__",
]
