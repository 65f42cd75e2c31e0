"""The stores a use case sees, as Protocols: bound to one transaction, no connection argument.

A unit of work (service.unit_of_work) hands out one of each, all bound to the same transaction;
the PostgreSQL adapters (adapters.postgres.unit_of_work) and the in-memory fakes (tests) both
implement them. Every method raises only the domain's errors (TransientError/PermanentError):
translating the driver's is the adapter's job.
"""

from collections.abc import Sequence
from typing import Protocol

from contracts.envelope import Envelope
from domain.jobs import CatalogRow
from domain.lifecycle import TenantStatus
from domain.migrations import Migration
from domain.tenants import TenantRecord

__all__ = [
    "BackupKeys", "Inbox", "Jobs", "Outbox", "Rollouts", "TenantKeyspace", "TenantRegistry"
]


class TenantRegistry(Protocol):
    """The tenants' registry rows, and the schema/role each row stands for."""

    async def lock(self, tenant_id: str) -> None:
        """Serialise all work on one tenant, whichever topic it came from, until commit."""

    async def get(self, tenant_id: str) -> TenantRecord | None: ...

    async def count_live(self) -> int:
        """Tenants not erased: what the quota counts."""

    async def create(self, tenant_id: str, plan: str, steps: Sequence[Migration]) -> TenantRecord:
        """Schema, role, template tables at the steps' last version, and the registry row, all
        or nothing; a DDL failure is a PermanentError."""

    async def migrate(self, tenant_id: str, steps: Sequence[Migration]) -> int:
        """Apply ``steps`` to the tenant's schema; returns the version recorded."""

    async def set_status(self, tenant_id: str, status: TenantStatus) -> None: ...

    async def mark_erasing(self, tenant_id: str, archive_id: str | None) -> None:
        """The erase is accepted: nothing brings the tenant back, and its archive id is fixed."""

    async def revoke_access(self, tenant_id: str) -> int:
        """Cut the tenant's access and end its open sessions; returns how many were ended."""

    async def grant_access(self, tenant_id: str) -> None: ...

    async def tables(self, tenant_id: str) -> list[str]:
        """The tables left in the tenant's schema (none when the schema is gone)."""

    async def drop_tables(self, tenant_id: str, tables: Sequence[str]) -> None: ...

    async def drop_schema_and_role(self, tenant_id: str) -> list[str]:
        """Drop what is left (schema, role, what the role owns); returns what was dropped."""

    async def tombstone(self, tenant_id: str) -> None:
        """Keep the row (ids are never reused) but nothing about the tenant: status erased."""


class Jobs(Protocol):
    """Queued jobs (backup, restore, erase) and the backup catalogue, as requests see them."""

    async def add(
        self,
        job_id: str,
        kind: str,
        tenant_id: str,
        cause_id: str,
        correlation_id: str,
        *,
        backup_id: str | None = None,
        archive: bool = False,
    ) -> None:
        """Queue a job; the same id twice is one job."""

    async def add_backup(
        self, job_id: str, tenant_id: str, cause_id: str, correlation_id: str
    ) -> str:
        """Queue a backup, or ride on one not started yet; returns the id of the answering job."""

    async def has_backup(self, tenant_id: str, backup_id: str) -> bool:
        """Whether the catalogue holds that backup (``latest``: any backup) of the tenant."""

    async def backups(self, tenant_id: str) -> list[CatalogRow]:
        """The tenant's catalogued backups, newest first."""

    async def catalogue(self, row: CatalogRow) -> None: ...

    async def forget(self, backup_ids: Sequence[str]) -> None:
        """Remove catalogue rows (their artifacts are the caller's to delete)."""

    async def replaced_of(self, tenant_id: str) -> list[str]:
        """Schemas a restore replaced that are kept for a while: the tenant's data too."""

    async def drop_replaced(self, schema: str) -> None:
        """Drop such a schema and forget it."""


class Inbox(Protocol):
    async def claim(self, group: str, envelope: Envelope) -> bool:
        """Record that ``group`` acts on this event id; False means it already has. Exactly
        one of two concurrent claimers of one id sees True."""

    async def claim_many(self, group: str, envelopes: Sequence[Envelope]) -> set[str]:
        """``claim`` for many events in one go: the ids claimed now (an id given twice is
        claimed once)."""

    async def release(self, group: str, event_ids: Sequence[str]) -> None:
        """Undo this transaction's claims of ``event_ids`` (events it will not act on after
        all); the transaction's other claims stand."""


class Outbox(Protocol):
    async def add(self, envelope: Envelope) -> None:
        """Stage a result for publication; the same event id twice is one row."""

    async def add_many(self, envelopes: Sequence[Envelope]) -> None:
        """Stage results in the order given."""


class Rollouts(Protocol):
    async def status(self, rollout_id: str) -> str | None:
        """A migration rollout's status (``halted`` stops its tenants), None if unknown."""


class BackupKeys(Protocol):
    async def destroy(self, tenant_id: str) -> bool:
        """Destroy the tenant's backup key (every backup encrypted to it becomes unreadable);
        False when there was none."""


class TenantKeyspace(Protocol):
    """The tenant's keys in the shared cache (Redis), outside any transaction."""

    async def unlink_all(self, tenant_id: str) -> int:
        """Delete every key of the tenant; returns how many there were. TransientError when
        the cache is unreachable."""
