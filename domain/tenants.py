"""A tenant as the registry knows it: the record every use case reads, whatever stores it."""

from dataclasses import dataclass
from datetime import datetime

from domain.lifecycle import TenantStatus


@dataclass(frozen=True)
class TenantRecord:
    tenant_id: str
    schema_name: str
    role_name: str
    plan: str
    status: TenantStatus
    schema_version: int
    created_at: datetime
    updated_at: datetime
    # The first accepted erase's archive backup: kept by every later erase and job retry.
    erase_archive_id: str | None = None
