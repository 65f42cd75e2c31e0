"""Tenant lifecycle states, the transitions between them, and what a lifecycle request may do.

Erase is terminal from the moment it is accepted: the tenant is ``erasing`` until the erase job
finishes and ``erased`` afterwards, and nothing brings it back. Every later erase request joins
the first one (same archive, nothing more deleted) instead of starting an erase of its own.
"""

from enum import StrEnum


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    ERASING = "erasing"  # an erase was accepted; access is cut, the erase job has not finished
    ERASED = "erased"


_ALLOWED: dict[TenantStatus, frozenset[TenantStatus]] = {
    TenantStatus.ACTIVE: frozenset({TenantStatus.SUSPENDED, TenantStatus.ERASING}),
    TenantStatus.SUSPENDED: frozenset({TenantStatus.ACTIVE, TenantStatus.ERASING}),
    TenantStatus.ERASING: frozenset({TenantStatus.ERASED}),
    TenantStatus.ERASED: frozenset(),
}


def can_transition(current: TenantStatus, target: TenantStatus) -> bool:
    """True when the lifecycle allows moving from ``current`` to ``target``.

    Staying in the same state is allowed: handlers are idempotent and answer again.
    """
    return current == target or target in _ALLOWED[current]


class Refusal(StrEnum):
    """Why a suspend, resume or migration changes nothing (the reason of its *Failed result)."""

    UNKNOWN_TENANT = "unknown_tenant"
    ERASING = "erasing"
    ERASED = "erased"


def refusal(status: TenantStatus | None) -> Refusal | None:
    """None when a tenant in ``status`` (None: not in the registry) may be suspended or resumed."""
    if status is None:
        return Refusal.UNKNOWN_TENANT
    if status == TenantStatus.ERASING:
        return Refusal.ERASING
    if status == TenantStatus.ERASED:
        return Refusal.ERASED
    return None


class EraseDecision(StrEnum):
    START = "start"  # cut access, mark erasing, record the archive id, queue the erase job
    JOIN = "join"  # an erase is accepted, not finished: queue a job that finishes that erase
    ANSWER = "answer"  # erased already: answer TenantErased again with the first archive id
    UNKNOWN_TENANT = "unknown_tenant"  # answer TenantEraseFailed{unknown_tenant}


def decide_erase(status: TenantStatus | None) -> EraseDecision:
    """What a TenantEraseRequested does, given the tenant's status (None: not in the registry)."""
    if status is None:
        return EraseDecision.UNKNOWN_TENANT
    if status == TenantStatus.ERASING:
        return EraseDecision.JOIN
    if status == TenantStatus.ERASED:
        return EraseDecision.ANSWER
    return EraseDecision.START


def doomed_backups(backup_ids: list[str], archive_id: str | None) -> list[str]:
    """The backups an erase deletes: all of them but the first erase's archive, whichever erase
    request or job retry runs this (an archive must never be deleted by its own erase)."""
    return [b for b in backup_ids if b != archive_id]


# Applications tag the connections they use for one tenant with application_name = this prefix
# + the tenant id. PostgreSQL does not show another backend's SET ROLE, so this tag is how
# suspension finds the tenant's sessions to end them and how metrics and the connection quota
# count them. One convention, used by all three.
SESSION_TAG_PREFIX = "tenant:"


def session_tag(tenant_id: str, prefix: str = SESSION_TAG_PREFIX) -> str:
    """The application_name of a connection used for ``tenant_id``; ``prefix`` is the
    deployment's (runtime.names: ``<ns>:tenant:`` in a namespace)."""
    return prefix + tenant_id
