"""CloudEvents 1.0 envelope, with our two extensions.

``correlationid`` follows a business flow across services; ``causationid`` is the ``id`` of the
event that caused this one (absent on events nobody caused, e.g. an operator's request). Both are
optional on the wire, as the spec makes every extension: a request without ``correlationid``
correlates with itself. Other producers' extensions are accepted when their names and values are
what the spec allows (lower-case ASCII letters and digits; a string, integer or boolean).
"""

import re
import uuid
from datetime import UTC, datetime
from hashlib import sha1
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
JSON_MEDIA_TYPE = "application/json"
JSON_MEDIA_TYPES = frozenset({JSON_MEDIA_TYPE, "text/json"})
# CloudEvents 1.0: attribute names are lower-case ASCII letters or digits.
_ATTRIBUTES: frozenset[str] = frozenset()  # set below, once the class exists
EXTENSION_NAME = re.compile(r"[a-z0-9]{1,64}")
SOURCE = "urn:tenant-service"
# Result ids are derived from the causing event's id, so a re-run emits the same id, never a new one.
_RESULT_NAMESPACE = uuid.UUID("7b3c2a5e-4f0d-4c55-9a1e-0c1f5d6b8e21")
_RESULT_NAMESPACE_BYTES = _RESULT_NAMESPACE.bytes


class Envelope(BaseModel):
    """The CloudEvents envelope; ``data`` is validated against the model named by ``type``."""

    # Unknown attributes are extensions: kept, but only with names and values the spec allows.
    model_config = ConfigDict(extra="allow", frozen=True)

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
    correlationid: str = Field(min_length=1, max_length=128)
    causationid: str | None = Field(default=None, max_length=128)
    data: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _defaults_and_extensions(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        ours = _ATTRIBUTES or cls.model_fields  # the class's, while it is being built
        for name, value in raw.items():
            if name in ours:
                continue
            if not EXTENSION_NAME.fullmatch(name):
                raise ValueError(
                    f"attribute name {name!r}: lower-case ASCII letters and digits only"
                )
            if value is not None and (
                isinstance(value, dict | list | float) or not isinstance(value, str | int | bool)
            ):
                raise ValueError(f"extension {name!r}: a string, integer or boolean")
        if raw.get("correlationid") is None and isinstance(raw.get("id"), str):
            raw = {**raw, "correlationid": raw["id"]}
        if raw.get("datacontenttype") is None:
            raw = {k: v for k, v in raw.items() if k != "datacontenttype"}
        return raw

    @field_validator("datacontenttype")
    @classmethod
    def _json_only(cls, value: str) -> str:
        if media_type(value) not in JSON_MEDIA_TYPES:
            raise ValueError(f"data must be JSON, not {value!r}")
        return value

    @property
    def extensions(self) -> dict[str, Any]:
        """Attributes beyond ours that the producer set (e.g. ``traceparent``)."""
        return dict(self.model_extra or {})


# The envelope's own attribute names, read once: ``model_fields`` is a costly descriptor lookup,
# and the validator above runs for every event consumed.
_ATTRIBUTES = frozenset(Envelope.model_fields)


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
