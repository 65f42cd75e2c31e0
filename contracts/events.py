"""One pydantic model per event, inputs and results alike.

The class name is the CloudEvents ``type`` exactly. Models are frozen and forbid extra fields; a
change to a model is a new contract version (``CONTRACT_VERSION``), never a silent edit.
"""

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import topics

CONTRACT_VERSION = 1
# Tenant ids are validated by the domain, not here: an envelope with a bad id is a valid message
# that deserves a TenantProvisioningFailed{reason: invalid_tenant_id}, not a dead letter.
TenantIdField = Field(min_length=1, max_length=256)
# MetricsDue concerns every tenant; it is keyed by this reserved value, which no tenant id matches.
ALL_TENANTS = "__all__"


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    topic: ClassVar[str]

    @property
    def subject(self) -> str:
        return str(getattr(self, "tenant_id", ALL_TENANTS))


# ---- inputs: facts upstream tells us -------------------------------------------------------------


class TenantRequested(Event):
    topic: ClassVar[str] = topics.LIFECYCLE
    tenant_id: str = TenantIdField
    plan: str = Field(min_length=1, max_length=64)
    display_name: str | None = Field(default=None, max_length=200)


class TenantDeactivated(Event):
    topic: ClassVar[str] = topics.LIFECYCLE
    tenant_id: str = TenantIdField
    reason: str | None = Field(default=None, max_length=500)


class TenantReactivated(Event):
    topic: ClassVar[str] = topics.LIFECYCLE
    tenant_id: str = TenantIdField


class TenantEraseRequested(Event):
    topic: ClassVar[str] = topics.LIFECYCLE
    tenant_id: str = TenantIdField
    archive: bool = False


class TenantMigrationDue(Event):
    topic: ClassVar[str] = topics.LIFECYCLE
    tenant_id: str = TenantIdField
    target_version: int = Field(ge=1)
    rollout_id: str = Field(min_length=1, max_length=128)


class BackupDue(Event):
    topic: ClassVar[str] = topics.BACKUPS
    tenant_id: str = TenantIdField
    window_start: datetime | None = None
    trigger: Literal["scheduled", "manual", "erase_archive"] = "manual"


class RestoreRequested(Event):
    topic: ClassVar[str] = topics.BACKUPS
    tenant_id: str = TenantIdField
    backup_id: str = Field(default="latest", min_length=1, max_length=128)


class MetricsDue(Event):
    topic: ClassVar[str] = topics.METRICS
    window_start: datetime
    interval_seconds: int = Field(ge=5)


# ---- results: facts we state, all on tenants.events ----------------------------------------------


class Result(Event):
    topic: ClassVar[str] = topics.EVENTS


class TenantProvisioned(Result):
    tenant_id: str = TenantIdField
    plan: str
    schema_name: str
    role_name: str
    schema_version: int


class TenantProvisioningFailed(Result):
    tenant_id: str = TenantIdField
    reason: Literal[
        "invalid_tenant_id", "unknown_plan", "conflict", "quota_exceeded", "database_error"
    ]
    detail: str = Field(default="", max_length=1000)


class TenantSuspended(Result):
    tenant_id: str = TenantIdField


class TenantResumed(Result):
    tenant_id: str = TenantIdField


class TenantSuspendFailed(Result):
    """Added in contract v1.2 (additive): a TenantDeactivated that changed nothing, and why."""

    tenant_id: str = TenantIdField
    reason: Literal["unknown_tenant", "erasing", "erased"]


class TenantResumeFailed(Result):
    """Added in contract v1.2 (additive): a TenantReactivated that changed nothing, and why."""

    tenant_id: str = TenantIdField
    reason: Literal["unknown_tenant", "erasing", "erased"]


class TenantErased(Result):
    tenant_id: str = TenantIdField
    archive_backup_id: str | None = None
    erased: list[str]


class TenantEraseFailed(Result):
    """Added in contract v1.1 (additive): an erase that cannot proceed as asked."""

    tenant_id: str = TenantIdField
    reason: str
    detail: str = Field(default="", max_length=1000)


class TenantMigrated(Result):
    tenant_id: str = TenantIdField
    rollout_id: str
    from_version: int
    to_version: int


class TenantMigrationFailed(Result):
    tenant_id: str = TenantIdField
    rollout_id: str
    version: int
    reason: str
    detail: str = Field(default="", max_length=1000)


class BackupCompleted(Result):
    tenant_id: str = TenantIdField
    backup_id: str
    uri: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class BackupFailed(Result):
    tenant_id: str = TenantIdField
    reason: str
    attempts: int = Field(ge=0)


class RestoreCompleted(Result):
    tenant_id: str = TenantIdField
    backup_id: str
    schema_version: int


class RestoreFailed(Result):
    tenant_id: str = TenantIdField
    backup_id: str
    reason: str


class TenantMetricsCollected(Result):
    tenant_id: str = TenantIdField
    collected_at: datetime
    size_bytes: int
    table_count: int
    live_tuples: int
    dead_tuples: int
    bloat_bytes: int
    seq_scans: int
    idx_scans: int
    cache_hit_ratio: float | None
    connections: int
    redis_bytes: int
    redis_keys: int


class TenantQuotaExceeded(Result):
    tenant_id: str = TenantIdField
    quota: Literal["size_bytes", "connections"]
    limit: int
    observed: int


INPUTS: tuple[type[Event], ...] = (
    TenantRequested,
    TenantDeactivated,
    TenantReactivated,
    TenantEraseRequested,
    TenantMigrationDue,
    BackupDue,
    RestoreRequested,
    MetricsDue,
)
RESULTS: tuple[type[Result], ...] = (
    TenantProvisioned,
    TenantProvisioningFailed,
    TenantSuspended,
    TenantResumed,
    TenantSuspendFailed,
    TenantResumeFailed,
    TenantErased,
    TenantEraseFailed,
    TenantMigrated,
    TenantMigrationFailed,
    BackupCompleted,
    BackupFailed,
    RestoreCompleted,
    RestoreFailed,
    TenantMetricsCollected,
    TenantQuotaExceeded,
)
EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in (*INPUTS, *RESULTS)}
