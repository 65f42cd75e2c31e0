"""What to do with a TenantRequested, given what the registry already knows."""

from dataclasses import dataclass
from enum import StrEnum

from domain.lifecycle import TenantStatus
from domain.tenant_ids import InvalidTenantId, validate_tenant_id


class Decision(StrEnum):
    PROVISION = "provision"  # create schema, role, tables, registry row
    ALREADY_PROVISIONED = "already_provisioned"  # answer TenantProvisioned again, no DDL
    INVALID_TENANT_ID = "invalid_tenant_id"
    UNKNOWN_PLAN = "unknown_plan"
    CONFLICT = "conflict"  # exists with another plan, or erasing/erased (ids are never reused)
    QUOTA_EXCEEDED = "quota_exceeded"


@dataclass(frozen=True)
class ExistingTenant:
    plan: str
    status: TenantStatus


def validate_request(
    tenant_id: str,
    plan: str,
    *,
    allowed_plans: frozenset[str],
    reserved_ids: frozenset[str] = frozenset(),
) -> Decision | None:
    """What the request alone decides (a refusal), before the registry is read; None: look.
    ``reserved_ids`` name the deployment's own objects (domain.namespaces.reserved_tenant_ids)."""
    try:
        validate_tenant_id(tenant_id)
    except InvalidTenantId:
        return Decision.INVALID_TENANT_ID
    if tenant_id in reserved_ids:
        return Decision.INVALID_TENANT_ID
    if plan not in allowed_plans:
        return Decision.UNKNOWN_PLAN
    return None


def decide_against_registry(
    plan: str, existing: ExistingTenant | None, *, tenant_count: int, max_tenants: int
) -> Decision:
    """What a valid request gets, given the registry's row for its id and the live count."""
    if existing is not None:
        # An accepted erase is terminal: a request must not bring the tenant back.
        if existing.status in (TenantStatus.ERASING, TenantStatus.ERASED) or existing.plan != plan:
            return Decision.CONFLICT
        return Decision.ALREADY_PROVISIONED
    if tenant_count >= max_tenants:
        return Decision.QUOTA_EXCEEDED
    return Decision.PROVISION


def decide_provisioning(
    tenant_id: str,
    plan: str,
    existing: ExistingTenant | None,
    *,
    allowed_plans: frozenset[str],
    tenant_count: int,
    max_tenants: int,
) -> Decision:
    """Decide the provisioning outcome; every non-PROVISION answer means: no DDL."""
    refused = validate_request(tenant_id, plan, allowed_plans=allowed_plans)
    if refused is not None:
        return refused
    return decide_against_registry(
        plan, existing, tenant_count=tenant_count, max_tenants=max_tenants
    )


def conflict_detail(existing: ExistingTenant, plan: str) -> str:
    """Which conflict it is, so the requester knows whether another plan would have worked."""
    if existing.status in (TenantStatus.ERASING, TenantStatus.ERASED):
        return f"tenant is {existing.status.value}: erase is terminal, tenant ids are never reused"
    return f"tenant exists with plan {existing.plan!r}, not {plan!r}"
