"""Jobs (backup, restore, erase) and catalogued backups, as every layer sees them."""

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


@dataclass(frozen=True)
class Job:
    job_id: str
    kind: str
    tenant_id: str
    cause_id: str
    correlation_id: str
    backup_id: str | None
    attempts: int
    archive: bool = False
    #: claimed past TENANT_BACKUP_MAX_ATTEMPTS: the claimer fails it instead of running it
    spent: bool = False
    #: the W3C context of the request that queued it (None: it carried none)
    traceparent: str | None = None
    tracestate: str | None = None


class Rider(NamedTuple):
    """A request riding on another's backup job: its result names it, in its own trace."""

    cause_id: str
    correlation_id: str
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True)
class CatalogRow:
    backup_id: str
    tenant_id: str
    target: str
    uri: str
    artifact_key: str
    manifest_key: str
    bytes: int
    sha256: str
    schema_version: int
    started_at: datetime
    finished_at: datetime
    last_drill_at: datetime | None
    last_drill_ok: bool | None
