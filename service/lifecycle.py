"""Suspend, resume, erase (accepted as a job) and per-tenant migrations, on tenants.lifecycle.

All of them take the tenant's advisory lock inside their transaction, as provisioning, restores
and erasure do, so work on one tenant is serialised across topics and workers. Every request
gets exactly one result: an unknown tenant, or one whose erase was accepted, gets a *Failed
result saying so, never a dead letter.
"""

import structlog

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
from domain.errors import PermanentError, StatementTimeout
from domain.job_ids import archive_id_for, erase_job_id
from domain.lifecycle import (
    EraseDecision,
    TenantStatus,
    decide_erase,
    refusal,
)
from domain.migrations import Migration, plan_migrations
from domain.tenant_ids import InvalidTenantId, validate_tenant_id
from domain.tenants import TenantRecord
from service.event_transaction import Accepted, EventTransaction
from service.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

SuspendOutcome = TenantSuspended | TenantSuspendFailed | None
ResumeOutcome = TenantResumed | TenantResumeFailed | None
EraseOutcome = Accepted | TenantErased | TenantEraseFailed | None
MigrationOutcome = TenantMigrated | TenantMigrationFailed | None


class LifecycleService:
    def __init__(
        self,
        transaction: EventTransaction[UnitOfWork],
        template: list[Migration],
        *,
        migration_lock_timeout_ms: int,
        migration_statement_timeout_ms: int,
        source: str,
    ) -> None:
        self._transaction = transaction
        self._template = template
        self._timeouts = (migration_lock_timeout_ms, migration_statement_timeout_ms)
        self._source = source

    async def _locked(self, uow: UnitOfWork, tenant_id: str) -> TenantRecord | None:
        """The tenant's registry row under its lock; None when the id cannot be a tenant's."""
        try:
            validate_tenant_id(tenant_id)
        except InvalidTenantId:
            return None
        await uow.tenants.lock(tenant_id)
        return await uow.tenants.get(tenant_id)

    async def deactivated(self, decoded: Decoded[TenantDeactivated]) -> SuspendOutcome:
        tenant_id = decoded.event.tenant_id

        async def effect(uow: UnitOfWork) -> TenantSuspended | TenantSuspendFailed:
            record = await self._locked(uow, tenant_id)
            why = refusal(record.status if record else None)
            if why is not None:
                log.info("suspend_refused", reason=why.value)
                return TenantSuspendFailed(tenant_id=tenant_id, reason=why.value)
            terminated = await uow.tenants.revoke_access(tenant_id)
            await uow.tenants.set_status(tenant_id, TenantStatus.SUSPENDED)
            log.info("tenant_suspended", sessions_terminated=terminated)
            return TenantSuspended(tenant_id=tenant_id)

        return await self._transaction.run(decoded.envelope, effect, source=self._source)

    async def reactivated(self, decoded: Decoded[TenantReactivated]) -> ResumeOutcome:
        tenant_id = decoded.event.tenant_id

        async def effect(uow: UnitOfWork) -> TenantResumed | TenantResumeFailed:
            record = await self._locked(uow, tenant_id)
            why = refusal(record.status if record else None)
            if why is not None:
                log.info("resume_refused", reason=why.value)
                return TenantResumeFailed(tenant_id=tenant_id, reason=why.value)
            await uow.tenants.grant_access(tenant_id)
            await uow.tenants.set_status(tenant_id, TenantStatus.ACTIVE)
            return TenantResumed(tenant_id=tenant_id)

        return await self._transaction.run(decoded.envelope, effect, source=self._source)

    async def erase_requested(self, decoded: Decoded[TenantEraseRequested]) -> EraseOutcome:
        """The first erase request is terminal at once: access cut, status ``erasing`` and its
        archive id recorded, with the erase job, in this transaction. A later request while
        that erase waits or runs queues a job that finishes the same erase (same archive); one
        after it answers TenantErased again with the first erase's archive id."""
        env, event = decoded.envelope, decoded.event

        async def effect(uow: UnitOfWork) -> Accepted | TenantErased | TenantEraseFailed:
            record = await self._locked(uow, event.tenant_id)
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
                await uow.tenants.revoke_access(event.tenant_id)
                archive_id = archive_id_for(job_id) if event.archive else None
                await uow.tenants.mark_erasing(event.tenant_id, archive_id)
            log.info("erase_accepted", decision=decision.value, archive_backup_id=archive_id)
            await uow.jobs.add(
                job_id,
                "erase",
                event.tenant_id,
                env.id,
                env.correlationid,
                archive=archive_id is not None,
            )
            return Accepted(job_id)

        return await self._transaction.run(env, effect, source=self._source)

    async def migration_due(self, decoded: Decoded[TenantMigrationDue]) -> MigrationOutcome:
        event = decoded.event

        def failed(reason: str, detail: str = "") -> TenantMigrationFailed:
            return TenantMigrationFailed(
                tenant_id=event.tenant_id,
                rollout_id=event.rollout_id,
                version=event.target_version,
                reason=reason,
                detail=detail[:1000],
            )

        async def effect(uow: UnitOfWork) -> TenantMigrated | TenantMigrationFailed:
            if await uow.rollouts.status(event.rollout_id) == "halted":
                return failed("rollout_halted")
            record = await self._locked(uow, event.tenant_id)
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
            # A lock wait past its timeout is a TransientError: the whole transaction (inbox
            # row included) rolls back and the delivery retries with backoff.
            await uow.limit_time(lock_timeout_ms=lock_ms, statement_timeout_ms=statement_ms)
            try:
                async with uow.savepoint():
                    version = await uow.tenants.migrate(event.tenant_id, list(plan.steps))
            except PermanentError as e:
                return failed("migration_error", e.detail)
            except StatementTimeout as e:
                # Its statement timeout is this migration's own budget: one that exceeds it
                # will exceed it again, so it fails (other faults stay transient and retry).
                return failed("timeout", str(e))
            return TenantMigrated(
                tenant_id=event.tenant_id,
                rollout_id=event.rollout_id,
                from_version=record.schema_version,
                to_version=version,
            )

        return await self._transaction.run(decoded.envelope, effect, source=self._source)

