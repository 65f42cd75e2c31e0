"""TenantRequested -> a tenant schema, exactly once -> TenantProvisioned or ...Failed."""

import structlog

from contracts.codec import Decoded
from contracts.events import TenantProvisioned, TenantProvisioningFailed, TenantRequested
from domain.errors import PermanentError
from domain.migrations import Migration, plan_migrations
from domain.provisioning import (
    Decision,
    ExistingTenant,
    conflict_detail,
    decide_against_registry,
    validate_request,
)
from domain.tenants import TenantRecord
from service.event_transaction import EventTransaction
from service.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

ProvisioningOutcome = TenantProvisioned | TenantProvisioningFailed | None


class ProvisioningService:
    def __init__(
        self,
        transaction: EventTransaction[UnitOfWork],
        template: list[Migration],
        *,
        plans: frozenset[str],
        max_tenants: int,
        source: str,
        reserved_ids: frozenset[str] = frozenset(),
    ) -> None:
        self._transaction = transaction
        self._reserved = reserved_ids  # ids naming the deployment's own schema and roles
        # New tenants are created at the latest template version.
        self._steps = list(plan_migrations(template, current=0).steps)
        self._plans = plans
        self._max_tenants = max_tenants
        self._source = source

    async def handle(self, decoded: Decoded[TenantRequested]) -> ProvisioningOutcome:
        """Provision the requested tenant once per event id; None: the event was seen before."""
        request = decoded.event

        async def effect(uow: UnitOfWork) -> TenantProvisioned | TenantProvisioningFailed:
            return await self._provision(uow, request)

        return await self._transaction.run(decoded.envelope, effect, source=self._source)

    async def _provision(
        self, uow: UnitOfWork, request: TenantRequested
    ) -> TenantProvisioned | TenantProvisioningFailed:
        tenant_id, plan = request.tenant_id, request.plan
        refused = validate_request(
            tenant_id, plan, allowed_plans=self._plans, reserved_ids=self._reserved
        )
        if refused is not None:  # the request alone decides: the registry is not read
            if tenant_id in self._reserved:
                log.info("provisioning_refused", reason=refused.value, reserved=True)
                return TenantProvisioningFailed(
                    tenant_id=tenant_id, reason="invalid_tenant_id", detail=_RESERVED
                )
            return _refused(refused, tenant_id, plan, None)
        await uow.tenants.lock(tenant_id)
        record = await uow.tenants.get(tenant_id)
        existing = ExistingTenant(record.plan, record.status) if record else None
        # The quota is soft by up to the number of concurrent provisioners: a global lock
        # would serialise every provisioning to enforce a limit of 10,000 exactly.
        count = await uow.tenants.count_live() if existing is None else 0
        decision = decide_against_registry(
            plan, existing, tenant_count=count, max_tenants=self._max_tenants
        )
        if decision == Decision.ALREADY_PROVISIONED:
            assert record is not None
            return _provisioned(record)
        if decision != Decision.PROVISION:
            return _refused(decision, tenant_id, plan, existing)
        try:
            # A savepoint: a DDL failure that retrying won't fix becomes a result, while the
            # inbox and outbox rows still commit.
            async with uow.savepoint():
                # Warm pool: a pre-made schema renamed to the tenant's, else create it.
                record = await uow.warm_pool.claim(tenant_id, plan) or await uow.tenants.create(
                    tenant_id, plan, self._steps
                )
        except PermanentError as e:
            log.warning("provisioning_failed", reason=e.reason, detail=e.detail)
            return TenantProvisioningFailed(
                tenant_id=tenant_id, reason="database_error", detail=e.detail[:1000]
            )
        log.info("tenant_provisioned", schema=record.schema_name)
        return _provisioned(record)


def _refused(
    decision: Decision, tenant_id: str, plan: str, existing: ExistingTenant | None
) -> TenantProvisioningFailed:
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


_RESERVED = "tenant id is reserved: its schema or role name is one of this deployment's own"
_DETAILS = {
    Decision.INVALID_TENANT_ID: "tenant id must match ^[a-z][a-z0-9_]{2,39}$",
    Decision.UNKNOWN_PLAN: "plan is not one of the configured plans",
    Decision.CONFLICT: "tenant exists with another plan, or was erased",  # see conflict_detail
    Decision.QUOTA_EXCEEDED: "the configured maximum number of tenants is reached",
}
