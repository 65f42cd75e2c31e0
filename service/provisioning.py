"""TenantRequested -> a tenant schema, exactly once -> TenantProvisioned or ...Failed."""

import asyncpg
import structlog

from adapters.postgres.errors import translated
from adapters.postgres.tenant_store import PostgresTenantStore, TenantRecord
from contracts.codec import Decoded
from contracts.events import Result, TenantProvisioned, TenantProvisioningFailed, TenantRequested
from domain.errors import PermanentError
from domain.migrations import Migration, plan_migrations
from domain.provisioning import Decision, conflict_detail, decide_provisioning
from service.event_transaction import EventTransaction, Outcome
from service.warm_pool import NoWarmPool, WarmPool

log = structlog.get_logger(__name__)


class ProvisioningService:
    def __init__(
        self,
        transaction: EventTransaction,
        store: PostgresTenantStore,
        template: list[Migration],
        *,
        plans: frozenset[str],
        max_tenants: int,
        source: str,
        warm_pool: WarmPool | None = None,
    ) -> None:
        self._transaction = transaction
        self._warm_pool = warm_pool or NoWarmPool()
        self._store = store
        # New tenants are created at the latest template version.
        self._steps = list(plan_migrations(template, current=0).steps)
        self._plans = plans
        self._max_tenants = max_tenants
        self._source = source

    async def handle(self, decoded: Decoded[TenantRequested]) -> Outcome:
        request = decoded.event

        async def effect(conn: asyncpg.Connection) -> Result:
            return await self._provision(conn, request)

        return await self._transaction.run(decoded.envelope, effect, source=self._source)

    async def _provision(self, conn: asyncpg.Connection, request: TenantRequested) -> Result:
        tenant_id, plan = request.tenant_id, request.plan
        existing = None
        decision = decide_provisioning(
            tenant_id, plan, None, allowed_plans=self._plans, tenant_count=0, max_tenants=1
        )
        existing = None
        if decision == Decision.PROVISION:  # the id and plan are fine: now look at the registry
            await self._store.lock_tenant(conn, tenant_id)
            existing = await self._store.existing(conn, tenant_id)
            # The quota is soft by up to the number of concurrent provisioners: a global lock
            # would serialise every provisioning to enforce a limit of 10,000 exactly.
            count = await self._store.count_live(conn) if existing is None else 0
            decision = decide_provisioning(
                tenant_id,
                plan,
                existing,
                allowed_plans=self._plans,
                tenant_count=count,
                max_tenants=self._max_tenants,
            )
        if decision == Decision.PROVISION:
            try:
                # A savepoint: a DDL failure that retrying won't fix becomes a result, while the
                # inbox and outbox rows still commit.
                with translated(f"provision {tenant_id}"):
                    async with conn.transaction():
                        # Warm pool: a pre-made schema renamed to the tenant's, else create it.
                        record = await self._warm_pool.claim(conn, tenant_id, plan)
                        if record is None:
                            record = await self._store.create(conn, tenant_id, plan, self._steps)
            except PermanentError as e:
                log.warning("provisioning_failed", reason=e.reason, detail=e.detail)
                return TenantProvisioningFailed(
                    tenant_id=tenant_id, reason="database_error", detail=e.detail[:1000]
                )
            log.info("tenant_provisioned", schema=record.schema_name)
            return _provisioned(record)
        if decision == Decision.ALREADY_PROVISIONED:
            existing_record = await self._store.get(conn, tenant_id)
            assert existing_record is not None
            return _provisioned(existing_record)
        log.info("provisioning_refused", reason=decision.value)
        return TenantProvisioningFailed(
            tenant_id=tenant_id,
            reason=decision.value,  # type: ignore[arg-type]  # the failure decisions are the Literal
            detail=(
                conflict_detail(existing, plan)
                if decision == Decision.CONFLICT and existing is not None
                else _DETAILS[decision]
            ),
        )


def _provisioned(record: TenantRecord) -> TenantProvisioned:
    # The names the registry holds: the deployment's namespace chose them (runtime.names).
    return TenantProvisioned(
        tenant_id=record.tenant_id,
        plan=record.plan,
        schema_name=record.schema_name,
        role_name=record.role_name,
        schema_version=record.schema_version,
    )


_DETAILS = {
    Decision.INVALID_TENANT_ID: "tenant id must match ^[a-z][a-z0-9_]{2,39}$",
    Decision.UNKNOWN_PLAN: "plan is not one of the configured plans",
    Decision.CONFLICT: "tenant exists with another plan, or was erased",  # see conflict_detail
    Decision.QUOTA_EXCEEDED: "the configured maximum number of tenants is reached",
}
