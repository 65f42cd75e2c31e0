"""CloudEvents 1.0 envelope, with our two extensions.

``correlationid`` follows a business flow across services; ``causationid`` is the ``id`` of the
event that caused this one (absent on events nobody caused, e.g. an operator's request). Both are
optional on the wire, as the spec makes every extension: a request without ``correlationid``
correlates with itself. Other producers' extensions are accepted when their names and values are
what the spec allows (lower-case ASCII letters and digits; a string, integer or boolean).
"""

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from hashlib import sha1
from typing import Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
JSON_MEDIA_TYPE = "application/json"
JSON_MEDIA_TYPES = frozenset({JSON_MEDIA_TYPE, "text/json"})
# CloudEvents 1.0: attribute names are lower-case ASCII letters or digits.
EXTENSION_NAME = re.compile(r"[a-z0-9]{1,64}")
SOURCE = "urn:tenant-service"
# Result ids are derived from the causing event's id, so a re-run emits the same id, never a new one.
_RESULT_NAMESPACE = uuid.UUID("7b3c2a5e-4f0d-4c55-9a1e-0c1f5d6b8e21")
_RESULT_NAMESPACE_BYTES = _RESULT_NAMESPACE.bytes


def _schema(schema: dict[str, Any]) -> None:
    """``correlationid`` is required in the schema: a consumer fills in a missing one (see the
    field), but every event we publish carries it, and readers of our results may count on it."""
    required = {*schema.get("required", ()), "correlationid"}
    schema["required"] = [name for name in schema["properties"] if name in required]


def _without_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class Envelope(BaseModel):
    """The CloudEvents envelope; ``data`` is validated against the model named by ``type``."""

    # Unknown attributes are extensions: kept, but only with names and values the spec allows.
    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra=_schema)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=512)
    type: str = Field(min_length=1, max_length=128)
    # Optional in the spec. When present: RFC 3339 with an offset (a naive time means nothing
    # across hosts), and the consumer checks it against its clock.
    time: AwareDatetime | None = None
    subject: str = Field(min_length=1, max_length=256)
    # JSON only; parameters (``; charset=utf-8``) are allowed, and absent means JSON.
    datacontenttype: str = JSON_MEDIA_TYPE
    dataschema: str | None = Field(default=None, max_length=2048)
    # Absent (or null) on the wire, it is the event's own id. Filled in by a validator of the
    # field, not of the model: a model's before-validator makes pydantic build a Python dict of
    # every event consumed, at twice the cost of parsing it. What we publish always carries it,
    # and the schema says so (_schema).
    correlationid: str = Field(
        default=None, validate_default=True, min_length=1, max_length=128,
        json_schema_extra=_without_default,
    )
    causationid: str | None = Field(default=None, max_length=128)
    data: dict[str, Any]

    @field_validator("correlationid", mode="before")
    @classmethod
    def _own_id_by_default(cls, value: Any, info: ValidationInfo) -> Any:
        return info.data.get("id") if value is None else value

    @field_validator("datacontenttype", mode="before")
    @classmethod
    def _json_by_default(cls, value: Any) -> Any:
        return JSON_MEDIA_TYPE if value is None else value

    @field_validator("datacontenttype")
    @classmethod
    def _json_only(cls, value: str) -> str:
        if media_type(value) not in JSON_MEDIA_TYPES:
            raise ValueError(f"data must be JSON, not {value!r}")
        return value

    @model_validator(mode="after")
    def _extensions_as_the_spec_allows(self) -> Self:
        for name, value in (self.__pydantic_extra__ or {}).items():
            if not EXTENSION_NAME.fullmatch(name):
                raise ValueError(
                    f"attribute name {name!r}: lower-case ASCII letters and digits only"
                )
            if value is not None and (
                isinstance(value, dict | list | float) or not isinstance(value, str | int | bool)
            ):
                raise ValueError(f"extension {name!r}: a string, integer or boolean")
        return self

    @property
    def extensions(self) -> dict[str, Any]:
        """Attributes beyond ours that the producer set (e.g. ``traceparent``)."""
        return dict(self.model_extra or {})


# Envelope.model_construct, written out for the envelope's own fields (see ``constructed``):
# every field in order, required ones to be given.
_TEMPLATE = {name: f.get_default() for name, f in Envelope.model_fields.items()}
_FIELD_SET = frozenset(_TEMPLATE)
_REQUIRED = frozenset(name for name, f in Envelope.model_fields.items() if f.is_required())
assert not Envelope.__pydantic_post_init__  # model_construct would call it


def constructed(attributes: Mapping[str, Any]) -> Envelope:
    """``Envelope.model_construct(**attributes)``: trusted values, not validated. The same
    object at a third of the cost: pydantic's looks at every field's aliases and defaults, and
    a consumer builds one result per event (a metrics tick, one per tenant). A unit test holds
    it to ``model_construct``."""
    fields = dict(_TEMPLATE)
    given: set[str] = set()
    extra: dict[str, Any] = {}
    for name, value in attributes.items():
        if name in _FIELD_SET:
            fields[name] = value
            given.add(name)
        else:
            extra[name] = value
    if not _REQUIRED <= given:
        raise TypeError(f"envelope attributes missing: {sorted(_REQUIRED - given)}")
    envelope = Envelope.__new__(Envelope)
    object.__setattr__(envelope, "__dict__", fields)
    object.__setattr__(envelope, "__pydantic_fields_set__", given)
    object.__setattr__(envelope, "__pydantic_extra__", extra)
    object.__setattr__(envelope, "__pydantic_private__", None)
    return envelope


def new_event_id() -> str:
    return str(uuid.uuid4())


def result_event_id(causation_id: str, result_type: str) -> str:
    """Deterministic id of the result ``result_type`` caused by event ``causation_id``: the
    name-based (version 5) UUID of ``<type>:<causation id>`` in our namespace, as
    ``uuid.uuid5`` gives it. Written out here because a consumer makes one per event, and
    ``uuid.uuid5`` builds and formats a UUID object at five times the cost."""
    digest = bytearray(sha1(_RESULT_NAMESPACE_BYTES + f"{result_type}:{causation_id}".encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def now() -> datetime:
    return datetime.now(UTC)


def media_type(content_type: str) -> str:
    """``application/json; charset=utf-8`` -> ``application/json`` (lower-cased, no parameters)."""
    return content_type.split(";", 1)[0].strip().lower()
