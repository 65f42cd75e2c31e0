"""decide_provisioning: one case per Decision, plus the precedence between rules."""

import pytest

from domain.lifecycle import TenantStatus
from domain.provisioning import Decision, ExistingTenant, decide_provisioning

PLANS = frozenset({"free", "pro"})
CASES: list[tuple[str, str, str, ExistingTenant | None, int, Decision]] = [
    ("new tenant", "acme", "free", None, 0, Decision.PROVISION),
    ("one below quota", "acme", "free", None, 9, Decision.PROVISION),
    ("bad id", "Bad-Id", "free", None, 0, Decision.INVALID_TENANT_ID),
    ("bad id beats bad plan", "Bad-Id", "gold", None, 0, Decision.INVALID_TENANT_ID),
    ("unknown plan", "acme", "gold", None, 0, Decision.UNKNOWN_PLAN),
    ("unknown plan beats existing", "acme", "gold",
     ExistingTenant("free", TenantStatus.ACTIVE), 0, Decision.UNKNOWN_PLAN),
    ("same plan, active", "acme", "free",
     ExistingTenant("free", TenantStatus.ACTIVE), 0, Decision.ALREADY_PROVISIONED),
    ("same plan, suspended", "acme", "free",
     ExistingTenant("free", TenantStatus.SUSPENDED), 0, Decision.ALREADY_PROVISIONED),
    ("existing ignores quota", "acme", "free",
     ExistingTenant("free", TenantStatus.ACTIVE), 10, Decision.ALREADY_PROVISIONED),
    ("other plan", "acme", "pro",
     ExistingTenant("free", TenantStatus.ACTIVE), 0, Decision.CONFLICT),
    ("erased, same plan", "acme", "free",
     ExistingTenant("free", TenantStatus.ERASED), 0, Decision.CONFLICT),
    ("erase accepted, same plan", "acme", "free",
     ExistingTenant("free", TenantStatus.ERASING), 0, Decision.CONFLICT),
    ("quota reached", "acme", "free", None, 10, Decision.QUOTA_EXCEEDED),
    ("quota exceeded", "acme", "free", None, 11, Decision.QUOTA_EXCEEDED),
]


@pytest.mark.parametrize(
    ("tenant_id", "plan", "existing", "count", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decision(
    tenant_id: str, plan: str, existing: ExistingTenant | None, count: int, expected: Decision
) -> None:
    decision = decide_provisioning(
        tenant_id, plan, existing, allowed_plans=PLANS, tenant_count=count, max_tenants=10
    )
    assert decision is expected


def test_every_decision_is_exercised() -> None:
    assert {case[-1] for case in CASES} == set(Decision)
