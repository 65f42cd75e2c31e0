"""Suspend, resume, erase (accepted as a job) and per-tenant migrations, on tenants.lifecycle.

All of them take the tenant's advisory lock inside their transaction, as provisioning, restores
and erasure do, so work on one tenant is serialised across topics and workers. Every request
gets exactly one result: an unknown tenant, or one whose erase was accepted, gets a *Failed
result saying so, never a dead letter.
"""

from typing import Any

import asyncpg
import structlog

from adapters.postgres.backup_jobs import PostgresBackupJobs
from adapters.postgres.errors import translated
from adapters.postgres.tenant_store import PostgresTenantStore, TenantRecord
from contracts.codec import Decoded
from contracts.events import (
    TenantDeactivated,
    TenantErased,
    TenantEraseFailed,
    TenantEraseRequested,
    TenantMigrated,
    TenantMigrationDue,
    TenantMigrationFailed,
    TenantReactivated,
    TenantResumed,
    TenantResumeFailed,
    TenantSuspended,
    TenantSuspendFailed,
)
from domain.errors import PermanentError, TransientError
from domain.job_ids import archive_id_for, erase_job_id
from domain.lifecycle import (
    EraseDecision,
    TenantStatus,
    decide_erase,
    refusal,
)
from domain.migrations import Migration, plan_migrations
from domain.tenant_ids import InvalidTenantId, quote_ident, validate_tenant_id
from service.event_transaction import Accepted, EventTransaction

log = structlog.get_logger(__name__)
_QUERY_CANCELED = "57014"  # statement_timeout (class 57, which is otherwise transient)


class LifecycleService:
    def __init__(
        self,
        transaction: EventTransaction,
        store: PostgresTenantStore,
        jobs: PostgresBackupJobs,
        template: list[Migration],
        *,
        control_schema: str,
        migration_lock_timeout_ms: int,
        migration_statement_timeout_ms: int,
        source: str,
    ) -> None:
        self._transaction, self._store, self._jobs = transaction, store, jobs
        self._template = template
        self._rollouts = f"{quote_ident(control_schema)}.migration_rollouts"
        self._timeouts = (migration_lock_timeout_ms, migration_statement_timeout_ms)
        self._source = source

    async def _locked(self, conn: asyncpg.Connection, tenant_id: str) -> TenantRecord | None:
        """The tenant's registry row under its lock; None when the id cannot be a tenant's."""
        try:
            validate_tenant_id(tenant_id)
        except InvalidTenantId:
            return None
        await self._store.lock_tenant(conn, tenant_id)
        return await self._store.get(conn, tenant_id)

    async def deactivated(self, decoded: Decoded[TenantDeactivated]) -> Any:
        tenant_id = decoded.event.tenant_id

        async def effect(conn: asyncpg.Connection) -> Any:
            record = await self._locked(conn, tenant_id)
            why = refusal(record.status if record else None)
            if why is not None:
                log.info("suspend_refused", reason=why.value)
                return TenantSuspendFailed(tenant_id=tenant_id, reason=why.value)
            terminated = await self._store.revoke_access(conn, tenant_id)
            await self._store.set_status(conn, tenant_id, TenantStatus.SUSPENDED)
            log.info("tenant_suspended", sessions_terminated=terminated)
            return TenantSuspended(tenant_id=tenant_id)

        return await self._transaction.run(decoded.envelope, effect, source=self._source)

    async def reactivated(self, decoded: Decoded[TenantReactivated]) -> Any:
        tenant_id = decoded.event.tenant_id

        async def effect(conn: asyncpg.Connection) -> Any:
            record = await self._locked(conn, tenant_id)
            why = refusal(record.status if record else None)
            if why is not None:
                log.info("resume_refused", reason=why.value)
                return TenantResumeFailed(tenant_id=tenant_id, reason=why.value)
            await self._store.grant_access(conn, tenant_id)
            await self._store.set_status(conn, tenant_id, TenantStatus.ACTIVE)
            return TenantResumed(tenant_id=tenant_id)

        return await self._transaction.run(decoded.envelope, effect, source=self._source)

    async def erase_requested(self, decoded: Decoded[TenantEraseRequested]) -> Any:
        """The first erase request is terminal at once: access cut, status ``erasing`` and its
        archive id recorded, with the erase job, in this transaction. A later request while
        that erase waits or runs queues a job that finishes the same erase (same archive); one
        after it answers TenantErased again with the first erase's archive id."""
        env, event = decoded.envelope, decoded.event

        async def effect(conn: asyncpg.Connection) -> Any:
            record = await self._locked(conn, event.tenant_id)
            decision = decide_erase(record.status if record else None)
            if decision == EraseDecision.UNKNOWN_TENANT:
                return TenantEraseFailed(tenant_id=event.tenant_id, reason="unknown_tenant")
            assert record is not None
            if decision == EraseDecision.ANSWER:  # erased before: answer again, no work
                return TenantErased(
                    tenant_id=event.tenant_id,
                    archive_backup_id=record.erase_archive_id,
                    erased=[],
                )
            job_id = erase_job_id(env.id)
            archive_id = record.erase_archive_id  # JOIN: the first erase decided
            if decision == EraseDecision.START:
                await self._store.revoke_access(conn, event.tenant_id)
                archive_id = archive_id_for(job_id) if event.archive else None
                await self._store.mark_erasing(conn, event.tenant_id, archive_id)
            log.info("erase_accepted", decision=decision.value, archive_backup_id=archive_id)
            await self._jobs.add(
                conn,
                job_id,
                "erase",
                event.tenant_id,
                env.id,
                env.correlationid,
                archive=archive_id is not None,
            )
            return Accepted(job_id)

        return await self._transaction.run(env, effect, source=self._source)

    async def migration_due(self, decoded: Decoded[TenantMigrationDue]) -> Any:
        event = decoded.event

        def failed(reason: str, detail: str = "") -> TenantMigrationFailed:
            return TenantMigrationFailed(
                tenant_id=event.tenant_id,
                rollout_id=event.rollout_id,
                version=event.target_version,
                reason=reason,
                detail=detail[:1000],
            )

        async def effect(conn: asyncpg.Connection) -> Any:
            status = await conn.fetchval(
                f"SELECT status FROM {self._rollouts} WHERE rollout_id = $1", event.rollout_id
            )
            if status == "halted":
                return failed("rollout_halted")
            record = await self._locked(conn, event.tenant_id)
            why = refusal(record.status if record else None)
            if why is not None or record is None:
                return failed(why.value if why else "unknown_tenant")
            try:
                plan = plan_migrations(self._template, record.schema_version, event.target_version)
            except ValueError as e:
                return failed("invalid_target", str(e))
            if plan.is_noop:
                return TenantMigrated(
                    tenant_id=event.tenant_id,
                    rollout_id=event.rollout_id,
                    from_version=record.schema_version,
                    to_version=record.schema_version,
                )
            lock_ms, statement_ms = self._timeouts
            # A lock timeout raises 55P03, translated to TransientError: the whole transaction
            # (inbox row included) rolls back and the delivery retries with backoff.
            await conn.execute(f"SET LOCAL lock_timeout = {int(lock_ms)}")
            await conn.execute(f"SET LOCAL statement_timeout = {int(statement_ms)}")
            try:
                with translated(f"migrate {event.tenant_id}"):
                    async with conn.transaction():
                        version = await self._store.migrate(conn, event.tenant_id, list(plan.steps))
            except PermanentError as e:
                return failed("migration_error", e.detail)
            except TransientError as e:
                # Its statement timeout is this migration's own budget: one that exceeds it
                # will exceed it again, so it fails (other faults stay transient and retry).
                if getattr(e.__cause__, "sqlstate", None) == _QUERY_CANCELED:
                    return failed("timeout", str(e))
                raise
            return TenantMigrated(
                tenant_id=event.tenant_id,
                rollout_id=event.rollout_id,
                from_version=record.schema_version,
                to_version=version,
            )

        return await self._transaction.run(decoded.envelope, effect, source=self._source)
