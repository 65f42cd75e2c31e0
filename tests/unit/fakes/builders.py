"""Rows a test arranges in FakeState: a registry row, a catalogue row."""

from datetime import UTC, datetime

from domain.jobs import CatalogRow
from domain.lifecycle import TenantStatus
from domain.tenants import TenantRecord

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def tenant(
    tenant_id: str,
    *,
    plan: str = "basic",
    status: TenantStatus = TenantStatus.ACTIVE,
    version: int = 1,
    archive: str | None = None,
) -> TenantRecord:
    """A registry row to arrange in FakeState.tenants."""
    return TenantRecord(
        tenant_id=tenant_id,
        schema_name=f"tenant_{tenant_id}",
        role_name=f"tenant_{tenant_id}_role",
        plan=plan,
        status=status,
        schema_version=version,
        created_at=EPOCH,
        updated_at=EPOCH,
        erase_archive_id=archive,
    )


def catalogued(tenant_id: str, backup_id: str, *, day: int = 1) -> CatalogRow:
    """A catalogue row to arrange in FakeState.catalogue."""
    at = EPOCH.replace(day=day)
    return CatalogRow(
        backup_id=backup_id, tenant_id=tenant_id, target="local", uri=f"file:///{backup_id}",
        artifact_key=f"{tenant_id}/{backup_id}.dump.zst.age",
        manifest_key=f"{tenant_id}/{backup_id}.manifest.json", bytes=1, sha256="0" * 64,
        schema_version=1, started_at=at, finished_at=at, last_drill_at=None, last_drill_ok=None,
    )
