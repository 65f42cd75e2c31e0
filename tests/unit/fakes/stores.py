"""In-memory fakes of the service ports and of the unit of work: no PostgreSQL, no Redis.

``FakeStores`` is the "database": every FakeUnitOfWork opened on it sees and changes the same
state. A unit snapshots that state when it begins and puts it back if its block raises, so a
rollback is as observable here as on PostgreSQL (``committed`` says which way a unit ended).
"""

import contextlib
import copy
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from adapters.trace_context import stamp
from contracts.envelope import Envelope
from domain.backups import attempts_spent
from domain.errors import PermanentError, TenantServiceError
from domain.jobs import CatalogRow, Job, Rider
from domain.lifecycle import TenantStatus
from domain.migrations import Migration
from domain.tenants import TenantRecord

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeState:
    """Everything the stores hold: copied whole on begin/savepoint, put back on rollback."""

    tenants: dict[str, TenantRecord] = field(default_factory=dict)
    access: dict[str, bool] = field(default_factory=dict)  # tenant id -> app role has its role
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    riders: dict[str, str] = field(default_factory=dict)  # cause id -> host job id
    rider_rows: dict[str, Rider] = field(default_factory=dict)  # cause id -> its Rider
    drills: list[tuple[str, bool]] = field(default_factory=list)  # (backup id, ok)
    catalogue: dict[str, CatalogRow] = field(default_factory=dict)  # backup id -> row
    tables: dict[str, list[str]] = field(default_factory=dict)  # tenant id -> its tables
    replaced: dict[str, str] = field(default_factory=dict)  # replaced schema -> tenant id
    backup_keys: set[str] = field(default_factory=set)  # tenants with a backup key
    inbox: set[tuple[str, str]] = field(default_factory=set)  # (group, event id)
    outbox: dict[str, Envelope] = field(default_factory=dict)  # event id -> envelope, in order
    rollouts: dict[str, str] = field(default_factory=dict)  # rollout id -> status
    # The warm pool: each entry is a pre-made schema's template steps (empty: off or drained).
    pooled: list[list[Migration]] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)  # tenants made from the warm pool


@dataclass
class Faults:
    """Errors the next calls raise, to test the failure paths (None: behave)."""

    create: TenantServiceError | None = None
    migrate: TenantServiceError | None = None
    outbox: TenantServiceError | None = None


class FakeTenants:
    def __init__(self, stores: "FakeStores") -> None:
        self._s = stores

    async def lock(self, tenant_id: str) -> None:
        self._s.locked.append(tenant_id)

    async def get(self, tenant_id: str) -> TenantRecord | None:
        return self._s.state.tenants.get(tenant_id)

    async def count_live(self) -> int:
        return sum(r.status != TenantStatus.ERASED for r in self._s.state.tenants.values())

    async def create(self, tenant_id: str, plan: str, steps: Sequence[Migration]) -> TenantRecord:
        if tenant_id in self._s.state.tenants:  # as CREATE ROLE/SCHEMA of an existing one
            raise PermanentError("database_error", f"provision {tenant_id}: exists")
        # Half the work is done before the fault: a savepoint must undo it.
        self._s.state.access[tenant_id] = True
        if self._s.faults.create is not None:
            raise self._s.faults.create
        record = TenantRecord(
            tenant_id=tenant_id,
            schema_name=f"tenant_{tenant_id}",
            role_name=f"tenant_{tenant_id}_role",
            plan=plan,
            status=TenantStatus.ACTIVE,
            schema_version=max((m.version for m in steps), default=0),
            created_at=_EPOCH,
            updated_at=_EPOCH,
        )
        self._s.state.tenants[tenant_id] = record
        self._s.state.tables[tenant_id] = [m.name for m in steps]
        return record

    async def migrate(self, tenant_id: str, steps: Sequence[Migration]) -> int:
        version = max(m.version for m in steps)
        self._update(tenant_id, schema_version=version)
        if self._s.faults.migrate is not None:
            raise self._s.faults.migrate
        return version

    async def set_status(self, tenant_id: str, status: TenantStatus) -> None:
        self._update(tenant_id, status=status)

    async def mark_erasing(self, tenant_id: str, archive_id: str | None) -> None:
        self._update(tenant_id, status=TenantStatus.ERASING, erase_archive_id=archive_id)

    async def revoke_access(self, tenant_id: str) -> int:
        self._s.state.access[tenant_id] = False
        return self._s.sessions.pop(tenant_id, 0)

    async def grant_access(self, tenant_id: str) -> None:
        self._s.state.access[tenant_id] = True

    async def tables(self, tenant_id: str) -> list[str]:
        return sorted(self._s.state.tables.get(tenant_id, []))

    async def drop_tables(self, tenant_id: str, tables: Sequence[str]) -> None:
        self._s.dropped_batches.append(list(tables))
        left = self._s.state.tables.get(tenant_id, [])
        self._s.state.tables[tenant_id] = [t for t in left if t not in tables]

    async def drop_schema_and_role(self, tenant_id: str) -> list[str]:
        if self._s.state.tables.pop(tenant_id, None) is None:
            return []
        self._s.state.access.pop(tenant_id, None)
        return ["schema", "role"]

    async def tombstone(self, tenant_id: str) -> None:
        self._update(tenant_id, status=TenantStatus.ERASED, plan="", schema_version=0)

    def _update(self, tenant_id: str, **changes: Any) -> None:
        tenants = self._s.state.tenants
        if tenant_id in tenants:  # an UPDATE of no row changes nothing
            tenants[tenant_id] = dataclasses.replace(tenants[tenant_id], **changes)


class FakeJobs:
    def __init__(self, stores: "FakeStores") -> None:
        self._s = stores

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
        self._s.state.jobs.setdefault(
            job_id,
            {"job_id": job_id, "kind": kind, "tenant_id": tenant_id, "cause_id": cause_id,
             "correlation_id": correlation_id, "backup_id": backup_id, "archive": archive,
             "status": "pending", "owner": None, "lease_until": None, "not_before": 0.0,
             "attempts": 0, "last_error": None, "swapped": None},
        )

    async def add_backup(
        self, job_id: str, tenant_id: str, cause_id: str, correlation_id: str
    ) -> str:
        host = next(
            (j["job_id"] for j in self._s.state.jobs.values()
             if j["tenant_id"] == tenant_id and j["kind"] == "backup"
             and j["status"] == "pending" and j["job_id"] != job_id),
            None,
        )
        if host is None:
            await self.add(job_id, "backup", tenant_id, cause_id, correlation_id)
            return job_id
        self._s.state.riders.setdefault(cause_id, host)
        self._s.state.rider_rows.setdefault(cause_id, Rider(cause_id, correlation_id))
        return str(host)

    async def has_backup(self, tenant_id: str, backup_id: str) -> bool:
        rows = await self.backups(tenant_id)
        return any(backup_id in ("latest", r.backup_id) for r in rows)

    async def backups(self, tenant_id: str) -> list[CatalogRow]:
        rows = [r for r in self._s.state.catalogue.values() if r.tenant_id == tenant_id]
        return sorted(rows, key=lambda r: r.finished_at, reverse=True)

    async def catalogue(self, row: CatalogRow) -> None:
        if row.backup_id in self._s.state.catalogue:  # the primary key
            raise PermanentError("database_error", f"catalogue {row.backup_id}: exists")
        self._s.state.catalogue[row.backup_id] = row

    async def forget(self, backup_ids: Sequence[str]) -> None:
        for backup_id in backup_ids:
            self._s.state.catalogue.pop(backup_id, None)

    async def replaced_of(self, tenant_id: str) -> list[str]:
        return [schema for schema, t in self._s.state.replaced.items() if t == tenant_id]

    async def drop_replaced(self, schema: str) -> None:
        self._s.state.replaced.pop(schema, None)

    async def expired_replaced(self) -> list[str]:
        return [s for s in self._s.state.replaced if s in self._s.expired_schemas]

    async def backup(self, tenant_id: str, backup_id: str) -> CatalogRow | None:
        rows = await self.backups(tenant_id)
        return next((r for r in rows if backup_id in ("latest", r.backup_id)), None)

    async def record_drill(self, backup_id: str, tenant_id: str, ok: bool, report: str) -> None:
        self._s.state.drills.append((backup_id, ok))

    def _held(self, job_id: str, owner: str) -> dict[str, Any] | None:
        job = self._s.state.jobs.get(job_id)
        if job is None or job["owner"] != owner or job["status"] != "running":
            return None
        return job if job["lease_until"] is not None and job["lease_until"] >= self._s.now else None

    async def finish(
        self, job_id: str, owner: str, status: str, error: str | None = None
    ) -> bool:
        job = self._held(job_id, owner)
        if job is None:
            return False
        job.update(status=status, last_error=error, owner=None, lease_until=None)
        return True

    async def retry_later(self, job_id: str, owner: str, delay_s: float, error: str) -> bool:
        job = self._held(job_id, owner)
        if job is None:
            return False
        job.update(status="pending", last_error=error, owner=None, lease_until=None,
                   not_before=self._s.now + delay_s)
        return True

    async def riders_of(self, job_id: str) -> list[Rider]:
        return [self._s.state.rider_rows[c] for c, host in self._s.state.riders.items()
                if host == job_id]

    async def swap_of(self, job_id: str) -> tuple[str, str] | None:
        job = self._s.state.jobs.get(job_id)
        return None if job is None else job["swapped"]


class FakeKeys:
    def __init__(self, stores: "FakeStores") -> None:
        self._s = stores

    async def destroy(self, tenant_id: str) -> bool:
        if tenant_id not in self._s.state.backup_keys:
            return False
        self._s.state.backup_keys.discard(tenant_id)
        return True


class FakeKeyspace:
    """The shared cache's keys, outside any transaction (as Redis is)."""

    def __init__(self, keys: set[str] | None = None, prefix: str = "tenant:") -> None:
        self.keys, self._prefix = keys if keys is not None else set(), prefix
        self.fault: TenantServiceError | None = None

    async def unlink_all(self, tenant_id: str) -> int:
        if self.fault is not None:
            raise self.fault
        doomed = {k for k in self.keys if k.startswith(f"{self._prefix}{tenant_id}:")}
        self.keys -= doomed
        return len(doomed)


class FakeInbox:
    def __init__(self, stores: "FakeStores") -> None:
        self._s = stores

    async def claim(self, group: str, envelope: Envelope) -> bool:
        key = (group, envelope.id)
        if key in self._s.state.inbox:
            return False
        self._s.state.inbox.add(key)
        return True

    async def claim_many(self, group: str, envelopes: Sequence[Envelope]) -> set[str]:
        return {e.id for e in envelopes if await self.claim(group, e)}

    async def release(self, group: str, event_ids: Sequence[str]) -> None:
        self._s.state.inbox -= {(group, i) for i in event_ids}


class FakeOutbox:
    def __init__(self, stores: "FakeStores") -> None:
        self._s = stores

    async def add(self, envelope: Envelope) -> None:
        await self.add_many([envelope])

    async def add_many(self, envelopes: Sequence[Envelope]) -> None:
        if self._s.faults.outbox is not None:
            raise self._s.faults.outbox
        for e in envelopes:  # stamped with the current span, as PostgresOutbox does
            self._s.state.outbox.setdefault(e.id, stamp(e))


class FakeRollouts:
    def __init__(self, stores: "FakeStores") -> None:
        self._s = stores

    async def status(self, rollout_id: str) -> str | None:
        return self._s.state.rollouts.get(rollout_id)


@dataclass
class FakeStores:
    """The in-memory "database", and what the test arranges or inspects around it."""

    state: FakeState = field(default_factory=FakeState)
    faults: Faults = field(default_factory=Faults)
    sessions: dict[str, int] = field(default_factory=dict)  # open sessions per tenant
    locked: list[str] = field(default_factory=list)  # every tenant lock taken, in order
    dropped_batches: list[list[str]] = field(default_factory=list)  # each drop_tables call
    units: list["FakeUnitOfWork"] = field(default_factory=list)  # every unit opened
    now: float = 0.0  # the database's clock (leases, not_before), moved by the test
    expired_schemas: set[str] = field(default_factory=set)  # replaced schemas past their grace

    def __call__(self, what: str = "transaction") -> "FakeUnitOfWork":
        """The factory an EventTransaction is given."""
        unit = FakeUnitOfWork(self, what)
        self.units.append(unit)
        return unit

    @property
    def results(self) -> list[Envelope]:
        return list(self.state.outbox.values())


class FakeWarmPool:
    """A claim takes a pooled schema and makes the tenant exactly as a creation would."""

    def __init__(self, stores: "FakeStores") -> None:
        self._s = stores

    async def claim(self, tenant_id: str, plan: str) -> TenantRecord | None:
        state = self._s.state
        if not state.pooled:
            return None
        record = await FakeTenants(self._s).create(tenant_id, plan, state.pooled.pop(0))
        state.claimed.append(tenant_id)
        return record


class FakeUnitOfWork:
    """See service.unit_of_work.UnitOfWork: commit on a clean exit, roll back on a raise."""

    def __init__(self, stores: FakeStores, what: str = "transaction") -> None:
        self._s, self.what = stores, what
        self.tenants = FakeTenants(stores)
        self.jobs = FakeJobs(stores)
        self.inbox = FakeInbox(stores)
        self.outbox = FakeOutbox(stores)
        self.rollouts = FakeRollouts(stores)
        self.keys = FakeKeys(stores)
        self.warm_pool = FakeWarmPool(stores)
        self.committed: bool | None = None  # None while open; False: rolled back
        self.time_limits: tuple[int, int] | None = None
        self._begun: FakeState | None = None

    async def __aenter__(self) -> Self:
        self._begun = copy.deepcopy(self._s.state)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._begun is not None, "the unit of work has not begun"
        if exc is not None:
            self._s.state = self._begun
        self.committed = exc is None

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        saved = copy.deepcopy(self._s.state)
        try:
            yield
        except BaseException:
            self._s.state = saved
            raise

    async def limit_time(self, *, lock_timeout_ms: int, statement_timeout_ms: int) -> None:
        self.time_limits = (lock_timeout_ms, statement_timeout_ms)


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
        created_at=_EPOCH,
        updated_at=_EPOCH,
        erase_archive_id=archive,
    )


def catalogued(tenant_id: str, backup_id: str, *, day: int = 1) -> CatalogRow:
    """A catalogue row to arrange in FakeState.catalogue."""
    at = _EPOCH.replace(day=day)
    return CatalogRow(
        backup_id=backup_id, tenant_id=tenant_id, target="local", uri=f"file:///{backup_id}",
        artifact_key=f"{tenant_id}/{backup_id}.dump.zst.age",
        manifest_key=f"{tenant_id}/{backup_id}.manifest.json", bytes=1, sha256="0" * 64,
        schema_version=1, started_at=at, finished_at=at, last_drill_at=None, last_drill_ok=None,
    )


class FakeJobLeases:
    """See service.ports.JobLeases: claims and renewals on the same FakeStores, committed at
    once (each is its own transaction)."""

    def __init__(self, stores: FakeStores) -> None:
        self._s = stores
        self.renew_fault: BaseException | None = None
        self.renewals = 0

    async def claim(
        self, owner: str, kinds: Sequence[str], lease_s: float, max_attempts: int
    ) -> Job | None:
        now, jobs = self._s.now, self._s.state.jobs.values()
        busy = {j["tenant_id"] for j in jobs if j["status"] == "running"
                and j["lease_until"] is not None and j["lease_until"] >= now}
        ready = [j for j in jobs if j["status"] in ("pending", "running") and j["kind"] in kinds
                 and j["not_before"] <= now and j["tenant_id"] not in busy
                 and (j["lease_until"] is None or j["lease_until"] < now)]
        if not ready:
            return None
        j = min(ready, key=lambda j: j["not_before"])  # stable: the oldest of equals first
        j.update(status="running", owner=owner, lease_until=now + lease_s,
                 attempts=j["attempts"] + 1)
        return Job(j["job_id"], j["kind"], j["tenant_id"], j["cause_id"], j["correlation_id"],
                   j["backup_id"], j["attempts"], j["archive"],
                   attempts_spent(j["attempts"], max_attempts))

    async def renew(self, job_id: str, owner: str, lease_s: float, progress_bytes: int) -> bool:
        self.renewals += 1
        if self.renew_fault is not None:
            raise self.renew_fault
        job = FakeJobs(self._s)._held(job_id, owner)  # noqa: SLF001
        if job is None:
            return False
        job.update(lease_until=self._s.now + lease_s, progress_bytes=progress_bytes)
        return True
