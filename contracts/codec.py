"""Bytes <-> (envelope, typed event). Every way a message can be unusable has a reason code."""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Generic, Literal, TypeVar

from pydantic import ValidationError

from contracts.envelope import (
    CONTENT_TYPE,
    JSON_MEDIA_TYPE,
    SOURCE,
    Envelope,
    constructed,
    media_type,
    new_event_id,
    now,
    result_event_id,
)
from contracts.events import EVENT_TYPES, Event

E = TypeVar("E", bound=Event)

# Reason codes written to the dead-letter header ``x-dlq-reason``.
TOO_LARGE = "too_large"
INVALID_JSON = "invalid_json"
NOT_CLOUDEVENT = "not_cloudevent"
UNKNOWN_TYPE = "unknown_type"
WRONG_TOPIC = "wrong_topic"
INVALID_DATA = "invalid_data"
KEY_MISMATCH = "key_mismatch"
TIME_OUT_OF_RANGE = "time_out_of_range"


class InvalidMessage(Exception):
    """The bytes are not an event this consumer can act on; they belong in the dead-letter topic."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:1000]


@dataclass(frozen=True)
class DecodeLimits:
    """What a consumer accepts beyond the schema (values from settings)."""

    max_bytes: int
    max_future_s: float  # how far ahead of the consumer's clock ``time`` may be
    max_age_s: float  # how far behind
    # The same two bounds as timedeltas, made once: every event consumed is checked against them.
    ahead: timedelta = field(init=False, repr=False, compare=False)
    behind: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ahead", timedelta(seconds=self.max_future_s))
        object.__setattr__(self, "behind", timedelta(seconds=self.max_age_s))


@dataclass(frozen=True)
class Decoded(Generic[E]):
    envelope: Envelope
    event: E


# Kafka headers as aiokafka gives them: (name, value) pairs.
Headers = Iterable[tuple[str, bytes | None]]
ContentMode = Literal["structured", "binary"]
# The CloudEvents Kafka protocol binding: attributes of a binary-mode event travel as ce_* headers.
_CE_PREFIX = "ce_"
_STRUCTURED_PREFIX = "application/cloudevents"


def decode(
    value: bytes,
    *,
    key: bytes | None,
    topic: str,
    limits: DecodeLimits,
    at: datetime | None = None,
    headers: Headers = (),
) -> Decoded[Event]:
    """Validate a CloudEvent read from ``topic`` (at time ``at``, default now) in either content
    mode of the Kafka protocol binding, and type its ``data``.

    Structured mode: ``content-type: application/cloudevents+json``, or no content type and a
    JSON envelope as the value. Binary mode: a ``ce_specversion`` header (and no structured
    content type); the attributes are the ``ce_*`` headers, the value is the data and the
    ``content-type`` header its ``datacontenttype``."""
    if len(value) > limits.max_bytes:
        raise InvalidMessage(TOO_LARGE, f"{len(value)} bytes > {limits.max_bytes}")
    mode, attributes, content_type = _read_headers(headers)
    try:
        if mode == "structured":
            # Parsed and validated in one pass by pydantic-core: a quarter cheaper than
            # json.loads and then model_validate, on every event consumed.
            envelope = Envelope.model_validate_json(value)
        else:
            try:
                body = json.loads(value)
            except (UnicodeDecodeError, ValueError) as e:
                raise InvalidMessage(INVALID_JSON, str(e)) from e
            raw: dict[str, Any] = {**attributes, "data": body}
            if content_type is not None:
                raw["datacontenttype"] = content_type
            envelope = Envelope.model_validate(raw)
    except ValidationError as e:
        errors = e.errors()
        reason = INVALID_JSON if errors and errors[0]["type"] == "json_invalid" else NOT_CLOUDEVENT
        raise InvalidMessage(reason, _summary(e)) from e
    if envelope.time is not None:
        _check_time(envelope.time, at or now(), limits)
    model = EVENT_TYPES.get(envelope.type)
    if model is None:
        raise InvalidMessage(UNKNOWN_TYPE, f"type {envelope.type!r}")
    if model.topic != topic:
        raise InvalidMessage(WRONG_TOPIC, f"{envelope.type} belongs on {model.topic}")
    try:
        event = model.model_validate(envelope.data)
    except ValidationError as e:
        raise InvalidMessage(INVALID_DATA, _summary(e)) from e
    if envelope.subject != event.subject:
        raise InvalidMessage(KEY_MISMATCH, "subject differs from the data's tenant id")
    if key is None or key != envelope.subject.encode("utf-8"):
        raise InvalidMessage(KEY_MISMATCH, "Kafka key differs from the subject")
    return Decoded(envelope, event)


def read_envelope(value: bytes, headers: Headers = ()) -> Envelope:
    """The envelope of a record in either content mode, without the consumer's checks (for
    readers of our own results: the CLI, tests)."""
    mode, attributes, content_type = _read_headers(headers)
    try:
        body = json.loads(value)
        raw = body if mode == "structured" else {**attributes, "data": body}
        if mode == "binary" and content_type is not None:
            raw["datacontenttype"] = content_type
        return Envelope.model_validate(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidMessage(NOT_CLOUDEVENT, str(e)[:200]) from e


def _read_headers(headers: Headers) -> tuple[ContentMode, dict[str, str], str | None]:
    """Which content mode the record is in, its ``ce_*`` attributes and its content type."""
    attributes: dict[str, str] = {}
    content_type: str | None = None
    for name, raw in headers:
        lowered = name.lower()
        if raw is None:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if lowered == "content-type" or lowered.startswith(_CE_PREFIX):
                raise InvalidMessage(NOT_CLOUDEVENT, f"header {name!r} is not UTF-8") from e
            continue
        if lowered == "content-type":
            content_type = text
        elif lowered.startswith(_CE_PREFIX):
            attributes[lowered[len(_CE_PREFIX) :]] = text
    if content_type is not None and _media_type(content_type).startswith(_STRUCTURED_PREFIX):
        if _media_type(content_type) != _STRUCTURED_PREFIX + "+json":
            raise InvalidMessage(NOT_CLOUDEVENT, f"structured format {content_type!r} is not JSON")
        return "structured", {}, None
    if "specversion" in attributes:
        return "binary", attributes, content_type
    # Neither: our own producers before the binding was honoured sent a JSON envelope with at
    # most ce_type/ce_id hints, so the value itself must be the envelope.
    return "structured", {}, None


# Producers send a handful of content types: each is parsed once.
_media_type = lru_cache(maxsize=64)(media_type)


def _check_time(time: datetime, at: datetime, limits: DecodeLimits) -> None:
    if time > at + limits.ahead:
        raise InvalidMessage(
            TIME_OUT_OF_RANGE,
            f"time {time.isoformat()} is more than {limits.max_future_s:g}s ahead of {at.isoformat()}",
        )
    if time < at - limits.behind:
        raise InvalidMessage(
            TIME_OUT_OF_RANGE,
            f"time {time.isoformat()} is more than {limits.max_age_s:g}s before {at.isoformat()}",
        )


def envelope_for(
    event: Event,
    *,
    correlation_id: str | None = None,
    cause: Envelope | None = None,
    event_id: str | None = None,
    source: str = SOURCE,
    extensions: Mapping[str, Any] | None = None,
) -> Envelope:
    """Wrap ``event``. A result of ``cause`` gets a deterministic id, its causation and correlation.
    ``extensions``: attributes beyond ours, set as it is built (a trace's, for one)."""
    type_name = type(event).__name__
    if cause is not None:
        event_id = event_id or result_event_id(cause.id, type_name)
        correlation_id = cause.correlationid
    event_id = event_id or new_event_id()
    attributes: dict[str, Any] = dict(
        specversion="1.0",
        id=event_id,
        source=source,
        type=type_name,
        time=now(),
        subject=event.subject,
        correlationid=correlation_id or event_id,
        causationid=cause.id if cause is not None else None,
        data=event.model_dump(mode="json"),
    )
    if extensions:
        attributes.update(extensions)
    if cause is not None:
        # A result: its ids come from the cause (validated when it was decoded) or are derived
        # from them, the rest from our own event model and the clock, so it is not validated
        # again. A consumer spent a tenth of its time here, once per event of every batch.
        return constructed(attributes)
    # Anything else may carry an id or a correlation id someone typed: validated.
    return Envelope(**attributes)


def encode(envelope: Envelope) -> bytes:
    # model_dump_json's bytes, not its str encoded again: one result is encoded per event.
    return envelope.__pydantic_serializer__.to_json(envelope, exclude_none=True)


def encode_record(envelope: Envelope, mode: ContentMode = "structured") -> tuple[bytes, dict[str, str]]:
    """The Kafka value and headers of ``envelope`` in the given content mode."""
    if mode == "structured":
        return encode(envelope), headers_for(envelope)
    attributes = envelope.model_dump(mode="json", exclude_none=True)
    data = attributes.pop("data")
    content_type = attributes.pop("datacontenttype", JSON_MEDIA_TYPE)
    headers = {f"{_CE_PREFIX}{name}": _header_text(value) for name, value in attributes.items()}
    headers["content-type"] = content_type
    return json.dumps(data, separators=(",", ":")).encode("utf-8"), headers


def kafka_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """Headers as Kafka carries them: our header values are text, Kafka's are UTF-8 bytes."""
    return [(name, text.encode("utf-8")) for name, text in headers.items()]


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def headers_for(envelope: Envelope) -> dict[str, str]:
    """Kafka headers that let tools (Kafka UI, kcat) filter without parsing the value."""
    return {
        "content-type": CONTENT_TYPE,
        "ce_type": envelope.type,
        "ce_id": envelope.id,
        "ce_correlationid": envelope.correlationid,
    }


def _summary(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in error.errors()[:5]
    )
