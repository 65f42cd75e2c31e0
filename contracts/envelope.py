"""CloudEvents 1.0 envelope, structured JSON mode, with our two extensions.

``correlationid`` follows a business flow across services; ``causationid`` is the ``id`` of the
event that caused this one (absent on events nobody caused, e.g. an operator's request).
"""

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
SOURCE = "urn:tenant-service"
# Result ids are derived from the causing event's id, so a re-run emits the same id, never a new one.
_RESULT_NAMESPACE = uuid.UUID("7b3c2a5e-4f0d-4c55-9a1e-0c1f5d6b8e21")


class Envelope(BaseModel):
    """The CloudEvents envelope; ``data`` is validated against the model named by ``type``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=512)
    type: str = Field(min_length=1, max_length=128)
    time: AwareDatetime  # RFC 3339 with an offset; a naive time has no meaning across hosts
    subject: str = Field(min_length=1, max_length=256)
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str = Field(min_length=1, max_length=128)
    causationid: str | None = Field(default=None, max_length=128)
    data: dict[str, Any]


def new_event_id() -> str:
    return str(uuid.uuid4())


def result_event_id(causation_id: str, result_type: str) -> str:
    """Deterministic id of the result ``result_type`` caused by event ``causation_id``."""
    return str(uuid.uuid5(_RESULT_NAMESPACE, f"{result_type}:{causation_id}"))


def now() -> datetime:
    return datetime.now(UTC)
