"""The wire: CloudEvents envelope, one model per event, topic names and the key rule."""

from contracts import events, topics
from contracts.codec import (
    Decoded,
    InvalidMessage,
    decode,
    encode,
    envelope_for,
    headers_for,
)
from contracts.envelope import CONTENT_TYPE, Envelope, result_event_id

__all__ = [
    "CONTENT_TYPE",
    "Decoded",
    "Envelope",
    "InvalidMessage",
    "decode",
    "encode",
    "envelope_for",
    "events",
    "headers_for",
    "result_event_id",
    "topics",
]
