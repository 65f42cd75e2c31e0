"""In-memory fakes of the service ports and of the unit of work: no PostgreSQL, no Redis.

``FakeStores`` is the "database": every FakeUnitOfWork opened on it sees and changes the same
state. A unit snapshots that state when it begins and puts it back if its block raises, so a
rollback is as observable here as on PostgreSQL (``committed`` says which way a unit ended).
The job side's stores are in jobs.py, the rows a test arranges in builders.py.
"""

import contextlib
import copy
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from contracts.envelope import Envelope
from domain.errors import PermanentError, TenantServiceError
from domain.jobs import CatalogRow, Rider
from domain.lifecycle import TenantStatus
from domain.migrations import Migration
from domain.tenants import TenantRecord
from tests.unit.fakes.builders import EPOCH
from tests.unit.fakes.jobs import FakeJobs


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
    migrate_of: dict[str, BaseException] = field(default_factory=dict)  # one tenant's only


class FakeTenants:
    def __init__(self, stores: "FakeStores") -> None:
        self._s = stores

    async def lock(self, tenant_id: str) -> None:
        self._s.locked.append(tenant_id)

    async def get(self, tenant_id: str) -> TenantRecord | None:
        self._s.reads.append(tenant_id)
        return self._s.state.tenants.get(tenant_id)

    async def lock_many(self, tenant_ids: Sequence[str]) -> None:
        self._s.locked.extend(sorted(set(tenant_ids)))

    async def get_many(self, tenant_ids: Sequence[str]) -> dict[str, TenantRecord]:
        tenants = self._s.state.tenants
        return {t: tenants[t] for t in tenant_ids if t in tenants}

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
            created_at=EPOCH,
            updated_at=EPOCH,
        )
        self._s.state.tenants[tenant_id] = record
        self._s.state.tables[tenant_id] = [m.name for m in steps]
        return record

    async def migrate(self, tenant_id: str, steps: Sequence[Migration]) -> int:
        version = max(m.version for m in steps)
        self._update(tenant_id, schema_version=version)
        if self._s.faults.migrate is not None:
            raise self._s.faults.migrate
        if tenant_id in self._s.faults.migrate_of:
            raise self._s.faults.migrate_of[tenant_id]
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
        for e in envelopes:  # as given, as PostgresOutbox does: their makers stamp them
            self._s.state.outbox.setdefault(e.id, e)


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
    reads: list[str] = field(default_factory=list)  # every registry row read one by one
    savepoints: int = 0  # every savepoint opened
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
        self._s.savepoints += 1
        saved, limits = copy.deepcopy(self._s.state), self.time_limits
        try:
            yield
        except BaseException:
            # As in Postgres: a rolled back savepoint undoes its SET LOCALs too.
            self._s.state, self.time_limits = saved, limits
            raise

    async def limit_time(self, *, lock_timeout_ms: int, statement_timeout_ms: int) -> None:
        self.time_limits = (lock_timeout_ms, statement_timeout_ms)

    async def end_time_limits(self) -> None:
        self.time_limits = None
