"""The stores a use case sees, as Protocols: bound to one transaction, no connection argument.

A unit of work (service.unit_of_work) hands out one of each, all bound to the same transaction;
the PostgreSQL adapters (adapters.postgres.unit_of_work) and the in-memory fakes (tests) both
implement them. Every method raises only the domain's errors (TransientError/PermanentError):
translating the driver's is the adapter's job.
"""

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from contracts.envelope import Envelope
from domain.jobs import CatalogRow, Job, Rider
from domain.lifecycle import TenantStatus
from domain.migrations import Migration
from domain.tenants import TenantRecord

__all__ = [
    "BackupKeyring", "BackupKeys", "BackupSnapshots", "Inbox", "JobLeases", "Jobs", "Outbox",
    "RestoreDatabase", "Rollouts", "Snapshot", "TenantFigures", "TenantFiguresInUnit",
    "TenantKeyspace", "TenantRegistry", "TenantUsage", "Usage",
]


class WarmPool(Protocol):
    """Pre-made tenant schemas (TENANT_WARM_POOL_SIZE); the adapter is adapters/postgres/warm_pool.py."""

    async def claim(self, tenant_id: str, plan: str) -> "TenantRecord | None":
        """In this transaction (under the tenant's lock, in the DDL savepoint): the tenant made
        from a pooled schema, registry row written exactly as a creation writes it, at the
        latest template version; None when the pool has none to give (the caller then creates
        the tenant). Two concurrent claims never take the same schema."""


class TenantRegistry(Protocol):
    """The tenants' registry rows, and the schema/role each row stands for."""

    async def lock(self, tenant_id: str) -> None:
        """Serialise all work on one tenant, whichever topic it came from, until commit."""

    async def get(self, tenant_id: str) -> TenantRecord | None: ...

    async def lock_many(self, tenant_ids: Sequence[str]) -> None:
        """``lock`` for each of them, in one go and in the locks' own order (two callers that
        both lock many never wait on each other in a circle)."""

    async def get_many(self, tenant_ids: Sequence[str]) -> dict[str, TenantRecord]:
        """The registry rows of those of them that have one, by tenant id."""

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

    async def expired_replaced(self) -> list[str]:
        """Replaced schemas whose grace period has ended."""

    async def backup(self, tenant_id: str, backup_id: str) -> CatalogRow | None:
        """The catalogued backup (``latest``: the newest), None if there is none."""

    async def record_drill(self, backup_id: str, tenant_id: str, ok: bool, report: str) -> None:
        """Record a restore drill's outcome on the backup."""

    # A holder's writes: fenced on the lease owner AND a live lease, False when it is not ours.
    async def finish(
        self, job_id: str, owner: str, status: str, error: str | None = None
    ) -> bool: ...

    async def retry_later(self, job_id: str, owner: str, delay_s: float, error: str) -> bool:
        """Back to pending, not claimable for ``delay_s``; fenced like finish."""

    async def riders_of(self, job_id: str) -> list[Rider]:
        """The requests riding on the job, oldest first."""

    async def swap_of(self, job_id: str) -> tuple[str, str] | None:
        """(restored backup id, replaced schema) once the restore's swap has committed."""


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
        """Stage a result for publication, as given; the same event id twice is one row.

        Results carry their trace (``adapters.trace_context``: ``writer_attributes`` as they
        are built, or ``stamp``) from where they are made, inside the span that makes them: a
        batch writes them later, outside of it."""

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


class JobLeases(Protocol):
    """Claims and lease renewals: each its own short transaction, outside any unit of work."""

    async def claim(
        self, owner: str, kinds: Sequence[str], lease_s: float, max_attempts: int
    ) -> Job | None:
        """Lease the oldest ready job of ``kinds`` whose tenant has no job under a live lease;
        counts an attempt, and a claim past ``max_attempts`` comes back ``spent``."""

    async def renew(self, job_id: str, owner: str, lease_s: float, progress_bytes: int) -> bool:
        """Extend a live lease of ``owner``; False when the job is not ours any more."""


class BackupKeyring(Protocol):
    """The tenants' backup keys, outside any transaction."""

    async def recipient(self, tenant_id: str) -> str:
        """The tenant's age recipient (its key is made on first use)."""

    async def identity(self, tenant_id: str) -> str | None:
        """The tenant's age identity, unwrapped with the master identity; None once destroyed."""


@dataclass(frozen=True)
class Snapshot:
    """A tenant's data frozen for a backup: the id pg_dump attaches to, and its row counts."""

    id: str
    exact: dict[str, int] = field(default_factory=dict)
    estimated: dict[str, int] = field(default_factory=dict)


class BackupSnapshots(Protocol):
    def snapshot(self, schema: str) -> AbstractAsyncContextManager[Snapshot]:
        """Hold one read-only REPEATABLE READ snapshot while the block runs (the dump attaches
        to it), with the schema's row counts taken in it: the manifest describes exactly the
        data in the artifact. A table too slow to count gets an estimate, listed apart."""


class RestoreDatabase(Protocol):
    """What a restore needs from PostgreSQL around its psql session."""

    async def restore_role(self) -> str:
        """Create or refresh the restore login and its fenced swap functions; its name."""

    async def terminate(self, role: str, application_name: str) -> None:
        """End the restore role's sessions so tagged (best effort: logs, never raises)."""

    async def create_scratch(self, name: str, role: str) -> str:
        """A scratch database the restore role may restore into; returns its DSN."""

    async def count_rows(self, dsn: str, schema: str, tables: Sequence[str]) -> dict[str, int]:
        """Exact row counts of ``tables`` in the database at ``dsn``."""

    async def drop_scratch(self, name: str) -> None: ...


class Usage(Protocol):
    """One tenant's footprint in the shared cache."""

    @property
    def bytes(self) -> int: ...
    @property
    def keys(self) -> int: ...
    @property
    def estimated(self) -> bool: ...


class TenantUsage(Protocol):
    """Every tenant's cache footprint, and the latest metrics snapshot per tenant."""

    async def scan(self) -> Any:
        """One pass over the tenants' keys, independent of the registry (opaque to callers)."""

    async def measure(
        self, tenant_ids: Sequence[str], scanned: Any = None
    ) -> Mapping[str, Usage]:
        """Usage of every tenant in ``tenant_ids`` (zero when it has no key)."""

    async def store_snapshots(self, snapshots: dict[str, dict[str, Any]], ttl_s: int) -> None: ...


class TenantFiguresInUnit(Protocol):
    """The metrics store bound to one unit of work: its methods are the adapter's, minus the
    connection."""

    async def collect(self) -> list[Any]:
        """Figures of every active or suspended tenant, one row (a tuple) per tenant, columns
        ``TenantFigures.columns``: one statement whatever the tenant count."""

    async def record(
        self,
        *,
        window_start: datetime,
        event_id: str,
        collected_at: datetime,
        figures: Sequence[Any],
        redis: Sequence[Sequence[object]],
        statements: int,
        duration_s: float,
        keep_ticks: int,
    ) -> bool:
        """Tick row and history; False when the window was recorded already."""

    def statements(self) -> int:
        """SQL statements run in this unit since it was bound (the driver's own excluded)."""


class TenantFigures(Protocol):
    @property
    def columns(self) -> Sequence[str]:
        """The columns of collect()'s rows, in order (the first is tenant_id)."""

    def within(self, uow: Any) -> AbstractAsyncContextManager[TenantFiguresInUnit]:
        """The store bound to ``uow`` (a begun unit of work of the same database), counting
        statements while the block runs."""

    async def backup_freshness(
        self, rpo_s: float, buckets: Sequence[float]
    ) -> tuple[float, int, int, list[int]]:
        """(oldest backup age s, tenants, tenants over the RPO, tenants with age <= each
        bucket), in its own short transaction."""
