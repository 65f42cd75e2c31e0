"""PostgresUnitOfWork: pool -> connection -> transaction, with the stores bound to it.

The conn-first adapters (PostgresTenantStore, PostgresBackupJobs, ...) stay as they are for the
CLI and tests; the bound views below give each use case the service.ports shape (no connection
argument) and translate every driver error where it is raised, into the domain's own.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import asyncpg

from adapters.age_keys import PostgresTenantKeys
from adapters.postgres.backup_jobs import CatalogRow, PostgresBackupJobs, Rider
from adapters.postgres.errors import translated
from adapters.postgres.inbox import PostgresInbox
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.rollouts import PostgresRollouts
from adapters.postgres.tenant_store import PostgresTenantStore
from adapters.postgres.warm_pool import PostgresWarmPool
from contracts.envelope import Envelope
from domain.lifecycle import TenantStatus
from domain.migrations import Migration
from domain.tenants import TenantRecord


@dataclass(frozen=True)
class PostgresStores:
    """The deployment's conn-first adapters (its names), which a unit of work binds."""

    tenants: PostgresTenantStore
    jobs: PostgresBackupJobs
    inbox: PostgresInbox
    outbox: PostgresOutbox
    rollouts: PostgresRollouts
    keys: PostgresTenantKeys
    warm_pool: PostgresWarmPool | None = None  # None: the pool is off, every tenant is created

    @classmethod
    def of(
        cls,
        control_schema: str,
        tenants: PostgresTenantStore,
        outbox: PostgresOutbox,
        warm_pool: PostgresWarmPool | None = None,
    ) -> "PostgresStores":
        """The stores of one deployment: its control schema, its registry, its outbox."""
        return cls(
            tenants=tenants,
            jobs=PostgresBackupJobs(control_schema),
            inbox=PostgresInbox(control_schema),
            outbox=outbox,
            rollouts=PostgresRollouts(control_schema),
            # The port only destroys keys, which needs no master recipient.
            keys=PostgresTenantKeys(control_schema, master_recipient=""),
            warm_pool=warm_pool,
        )


class PostgresUnitOfWork:
    """One pooled connection and one transaction; see service.unit_of_work.UnitOfWork."""

    tenants: "BoundTenants"
    jobs: "BoundJobs"
    inbox: "BoundInbox"
    outbox: "BoundOutbox"
    rollouts: "BoundRollouts"
    keys: "BoundKeys"
    warm_pool: "BoundWarmPool"

    def __init__(self, pool: asyncpg.Pool, stores: PostgresStores, what: str = "transaction"):
        self._pool, self._stores, self._what = pool, stores, what
        self._stack = AsyncExitStack()
        self._conn: asyncpg.Connection | None = None

    @property
    def connection(self) -> asyncpg.Connection:
        """The bound connection, for adapters that take one (not for use cases)."""
        assert self._conn is not None, "the unit of work has not begun"
        return self._conn

    async def __aenter__(self) -> Self:
        try:
            with translated(self._what):
                conn = await self._stack.enter_async_context(self._pool.acquire())
                await self._stack.enter_async_context(conn.transaction())
        except BaseException:
            await self._stack.aclose()
            raise
        self._conn = conn
        s = self._stores
        self.tenants = BoundTenants(s.tenants, conn)
        self.jobs = BoundJobs(s.jobs, conn)
        self.inbox = BoundInbox(s.inbox, conn)
        self.outbox = BoundOutbox(s.outbox, conn)
        self.rollouts = BoundRollouts(s.rollouts, conn)
        self.keys = BoundKeys(s.keys, conn)
        self.warm_pool = BoundWarmPool(s.warm_pool, conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with translated(self._what):
            try:
                # Commits on a clean exit, rolls back otherwise; then the connection goes back.
                await self._stack.__aexit__(exc_type, exc, tb)
            finally:
                self._conn = None
            if exc is not None:
                raise exc  # re-raised here so a driver error leaves as the domain's

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        with translated(self._what):
            async with self.connection.transaction():
                yield

    async def limit_time(self, *, lock_timeout_ms: int, statement_timeout_ms: int) -> None:
        with translated(self._what):
            await self.connection.execute(
                f"SET LOCAL lock_timeout = {int(lock_timeout_ms)};"
                f" SET LOCAL statement_timeout = {int(statement_timeout_ms)}"
            )

    async def end_time_limits(self) -> None:
        # DEFAULT is the connection's own value (the pool's start-up settings), not "none".
        with translated(self._what):
            await self.connection.execute(
                "SET LOCAL lock_timeout TO DEFAULT; SET LOCAL statement_timeout TO DEFAULT"
            )


@dataclass(frozen=True)
class PostgresUnitOfWorks:
    """The factory EventTransaction is given: ``uows(what)`` is a new, not yet begun, unit."""

    pool: asyncpg.Pool
    stores: PostgresStores

    def __call__(self, what: str) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self.pool, self.stores, what)


class BoundTenants:
    def __init__(self, store: PostgresTenantStore, conn: asyncpg.Connection) -> None:
        self._store, self._conn = store, conn

    async def lock(self, tenant_id: str) -> None:
        with translated(f"lock {tenant_id}"):
            await self._store.lock_tenant(self._conn, tenant_id)

    async def get(self, tenant_id: str) -> TenantRecord | None:
        with translated(f"read {tenant_id}"):
            return await self._store.get(self._conn, tenant_id)

    async def lock_many(self, tenant_ids: Sequence[str]) -> None:
        with translated(f"lock {len(tenant_ids)} tenants"):
            await self._store.lock_tenants(self._conn, tenant_ids)

    async def get_many(self, tenant_ids: Sequence[str]) -> dict[str, TenantRecord]:
        with translated(f"read {len(tenant_ids)} tenants"):
            return await self._store.get_many(self._conn, tenant_ids)

    async def count_live(self) -> int:
        with translated("count tenants"):
            return await self._store.count_live(self._conn)

    async def create(self, tenant_id: str, plan: str, steps: Sequence[Migration]) -> TenantRecord:
        with translated(f"provision {tenant_id}"):
            return await self._store.create(self._conn, tenant_id, plan, list(steps))

    async def migrate(self, tenant_id: str, steps: Sequence[Migration]) -> int:
        with translated(f"migrate {tenant_id}"):
            return await self._store.migrate(self._conn, tenant_id, list(steps))

    async def set_status(self, tenant_id: str, status: TenantStatus) -> None:
        with translated(f"set {tenant_id} {status.value}"):
            await self._store.set_status(self._conn, tenant_id, status)

    async def mark_erasing(self, tenant_id: str, archive_id: str | None) -> None:
        with translated(f"mark {tenant_id} erasing"):
            await self._store.mark_erasing(self._conn, tenant_id, archive_id)

    async def revoke_access(self, tenant_id: str) -> int:
        with translated(f"revoke {tenant_id}"):
            return await self._store.revoke_access(self._conn, tenant_id)

    async def grant_access(self, tenant_id: str) -> None:
        with translated(f"grant {tenant_id}"):
            await self._store.grant_access(self._conn, tenant_id)

    async def tables(self, tenant_id: str) -> list[str]:
        with translated(f"erase {tenant_id} tables"):
            return await self._store.tables(self._conn, self._store.schema_of(tenant_id))

    async def drop_tables(self, tenant_id: str, tables: Sequence[str]) -> None:
        with translated(f"erase {tenant_id} tables"):
            await self._store.drop_tables(self._conn, self._store.schema_of(tenant_id), list(tables))

    async def drop_schema_and_role(self, tenant_id: str) -> list[str]:
        with translated(f"erase {tenant_id} schema"):
            return await self._store.drop_schema_and_role(self._conn, tenant_id)

    async def tombstone(self, tenant_id: str) -> None:
        with translated(f"erase {tenant_id}"):
            await self._store.tombstone(self._conn, tenant_id)


class BoundJobs:
    def __init__(self, jobs: PostgresBackupJobs, conn: asyncpg.Connection) -> None:
        self._jobs, self._conn = jobs, conn

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
        with translated(f"queue {kind} job {job_id}"):
            await self._jobs.add(
                self._conn, job_id, kind, tenant_id, cause_id, correlation_id,
                backup_id=backup_id, archive=archive,
            )

    async def add_backup(
        self, job_id: str, tenant_id: str, cause_id: str, correlation_id: str
    ) -> str:
        with translated(f"queue backup {job_id}"):
            return await self._jobs.add_backup(
                self._conn, job_id, tenant_id, cause_id, correlation_id
            )

    async def has_backup(self, tenant_id: str, backup_id: str) -> bool:
        with translated(f"find backup {backup_id}"):
            return await self._jobs.backup(self._conn, tenant_id, backup_id) is not None

    async def backups(self, tenant_id: str) -> list[CatalogRow]:
        with translated(f"backups of {tenant_id}"):
            return await self._jobs.backups(self._conn, tenant_id)

    async def catalogue(self, row: CatalogRow) -> None:
        with translated(f"catalogue {row.backup_id}"):
            await self._jobs.catalogue(self._conn, row)

    async def forget(self, backup_ids: Sequence[str]) -> None:
        with translated("forget backups"):
            await self._jobs.forget(self._conn, list(backup_ids))

    async def replaced_of(self, tenant_id: str) -> list[str]:
        with translated(f"replaced schemas of {tenant_id}"):
            return await self._jobs.replaced_of(self._conn, tenant_id)

    async def drop_replaced(self, schema: str) -> None:
        with translated(f"drop replaced {schema}"):
            await self._jobs.drop_replaced(self._conn, schema)

    async def expired_replaced(self) -> list[str]:
        with translated("expired replaced schemas"):
            return await self._jobs.expired_replaced(self._conn)

    async def backup(self, tenant_id: str, backup_id: str) -> CatalogRow | None:
        with translated(f"find backup {backup_id}"):
            return await self._jobs.backup(self._conn, tenant_id, backup_id)

    async def record_drill(self, backup_id: str, tenant_id: str, ok: bool, report: str) -> None:
        with translated(f"record the drill of {backup_id}"):
            await self._jobs.record_drill(self._conn, backup_id, tenant_id, ok, report)

    async def finish(
        self, job_id: str, owner: str, status: str, error: str | None = None
    ) -> bool:
        with translated(f"finish job {job_id}"):
            return await self._jobs.finish(self._conn, job_id, owner, status, error)

    async def retry_later(self, job_id: str, owner: str, delay_s: float, error: str) -> bool:
        with translated(f"retry job {job_id} later"):
            return await self._jobs.retry_later(self._conn, job_id, owner, delay_s, error)

    async def riders_of(self, job_id: str) -> list[Rider]:
        with translated(f"riders of job {job_id}"):
            return await self._jobs.riders_of(self._conn, job_id)

    async def swap_of(self, job_id: str) -> tuple[str, str] | None:
        with translated(f"swap of job {job_id}"):
            return await self._jobs.swap_of(self._conn, job_id)


class BoundInbox:
    def __init__(self, inbox: PostgresInbox, conn: asyncpg.Connection) -> None:
        self._inbox, self._conn = inbox, conn

    async def claim(self, group: str, envelope: Envelope) -> bool:
        with translated(f"inbox {group}"):
            return await self._inbox.claim(self._conn, group, envelope)

    async def claim_many(self, group: str, envelopes: Sequence[Envelope]) -> set[str]:
        with translated(f"inbox {group}"):
            return await self._inbox.claim_many(self._conn, group, envelopes)

    async def release(self, group: str, event_ids: Sequence[str]) -> None:
        with translated(f"inbox {group}"):
            await self._inbox.release(self._conn, group, event_ids)


class BoundOutbox:
    def __init__(self, outbox: PostgresOutbox, conn: asyncpg.Connection) -> None:
        self._outbox, self._conn = outbox, conn

    async def add(self, envelope: Envelope) -> None:
        await self.add_many([envelope])

    async def add_many(self, envelopes: Sequence[Envelope]) -> None:
        with translated("outbox"):
            await self._outbox.add_many(self._conn, envelopes)


class BoundRollouts:
    def __init__(self, rollouts: PostgresRollouts, conn: asyncpg.Connection) -> None:
        self._rollouts, self._conn = rollouts, conn

    async def status(self, rollout_id: str) -> str | None:
        with translated(f"rollout {rollout_id}"):
            return await self._rollouts.status(self._conn, rollout_id)


class BoundKeys:
    def __init__(self, keys: PostgresTenantKeys, conn: asyncpg.Connection) -> None:
        self._keys, self._conn = keys, conn

    async def destroy(self, tenant_id: str) -> bool:
        with translated(f"destroy the key of {tenant_id}"):
            return await self._keys.destroy(self._conn, tenant_id)


class BoundWarmPool:
    def __init__(self, pool: PostgresWarmPool | None, conn: asyncpg.Connection) -> None:
        self._pool, self._conn = pool, conn

    async def claim(self, tenant_id: str, plan: str) -> TenantRecord | None:
        if self._pool is None:
            return None
        return await self._pool.claim(self._conn, tenant_id, plan)  # translates its own errors
