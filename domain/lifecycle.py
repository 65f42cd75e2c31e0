"""Tenant lifecycle states and the transitions between them."""

from enum import StrEnum


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    ERASED = "erased"


_ALLOWED: dict[TenantStatus, frozenset[TenantStatus]] = {
    TenantStatus.ACTIVE: frozenset({TenantStatus.SUSPENDED, TenantStatus.ERASED}),
    TenantStatus.SUSPENDED: frozenset({TenantStatus.ACTIVE, TenantStatus.ERASED}),
    TenantStatus.ERASED: frozenset(),
}


def can_transition(current: TenantStatus, target: TenantStatus) -> bool:
    """True when the lifecycle allows moving from ``current`` to ``target``.

    Staying in the same state is allowed: handlers are idempotent and answer again.
    """
    return current == target or target in _ALLOWED[current]
