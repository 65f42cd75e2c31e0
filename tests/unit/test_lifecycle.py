"""Lifecycle rules: allowed transitions (every pair), what a request may do in each state, the
first erase's archive kept by every later erase, and the one session-tagging convention."""

import itertools

import pytest

from domain.lifecycle import (
    SESSION_TAG_PREFIX,
    EraseDecision,
    Refusal,
    TenantStatus,
    can_transition,
    decide_erase,
    doomed_backups,
    refusal,
    session_tag,
)
from domain.tenant_ids import validate_tenant_id

ACTIVE, SUSPENDED = TenantStatus.ACTIVE, TenantStatus.SUSPENDED
ERASING, ERASED = TenantStatus.ERASING, TenantStatus.ERASED
ALLOWED = {
    (ACTIVE, ACTIVE),
    (ACTIVE, SUSPENDED),
    (ACTIVE, ERASING),
    (SUSPENDED, SUSPENDED),
    (SUSPENDED, ACTIVE),
    (SUSPENDED, ERASING),
    (ERASING, ERASING),
    (ERASING, ERASED),
    (ERASED, ERASED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(TenantStatus, repeat=2)))
def test_transition_table(current: TenantStatus, target: TenantStatus) -> None:
    assert can_transition(current, target) is ((current, target) in ALLOWED)


def test_an_accepted_erase_never_goes_back() -> None:
    for gone in (ERASING, ERASED):
        assert not can_transition(gone, ACTIVE) and not can_transition(gone, SUSPENDED)
    assert [t for t in TenantStatus if t != ERASED and can_transition(ERASED, t)] == []


def test_status_values_match_the_registry_check_constraint() -> None:
    assert {s.value for s in TenantStatus} == {"active", "suspended", "erasing", "erased"}


@pytest.mark.parametrize(("status", "why"), [
    (None, Refusal.UNKNOWN_TENANT),
    (ACTIVE, None),
    (SUSPENDED, None),
    (ERASING, Refusal.ERASING),
    (ERASED, Refusal.ERASED),
])
def test_suspend_and_resume_are_refused_once_an_erase_is_accepted(
    status: TenantStatus | None, why: Refusal | None
) -> None:
    assert refusal(status) == why


@pytest.mark.parametrize(("status", "decision"), [
    (None, EraseDecision.UNKNOWN_TENANT),
    (ACTIVE, EraseDecision.START),
    (SUSPENDED, EraseDecision.START),
    (ERASING, EraseDecision.JOIN),
    (ERASED, EraseDecision.ANSWER),
])
def test_only_the_first_erase_request_starts_an_erase(
    status: TenantStatus | None, decision: EraseDecision
) -> None:
    assert decide_erase(status) == decision


def test_an_erase_deletes_every_backup_but_the_first_archive() -> None:
    assert doomed_backups(["b-1", "a-1", "b-2"], "a-1") == ["b-1", "b-2"]
    assert doomed_backups(["b-1", "a-1"], None) == ["b-1", "a-1"]
    assert doomed_backups([], "a-1") == []


def test_the_session_tag_is_the_metrics_prefix_plus_the_id() -> None:
    tenant_id = validate_tenant_id("acme_01")
    assert session_tag(tenant_id) == "tenant:acme_01"
    assert session_tag(tenant_id).startswith(SESSION_TAG_PREFIX)
    assert len(session_tag("a" * 40)) <= 63  # application_name keeps 63 bytes (NAMEDATALEN - 1)
