"""Allowed lifecycle transitions, every pair."""

import itertools

import pytest

from domain.lifecycle import TenantStatus, can_transition

ACTIVE, SUSPENDED, ERASED = TenantStatus.ACTIVE, TenantStatus.SUSPENDED, TenantStatus.ERASED
ALLOWED = {
    (ACTIVE, ACTIVE),
    (ACTIVE, SUSPENDED),
    (ACTIVE, ERASED),
    (SUSPENDED, SUSPENDED),
    (SUSPENDED, ACTIVE),
    (SUSPENDED, ERASED),
    (ERASED, ERASED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(TenantStatus, repeat=2)))
def test_transition_table(current: TenantStatus, target: TenantStatus) -> None:
    assert can_transition(current, target) is ((current, target) in ALLOWED)


def test_erased_is_terminal() -> None:
    assert [t for t in TenantStatus if t != ERASED and can_transition(ERASED, t)] == []


def test_status_values_match_the_registry_check_constraint() -> None:
    assert {s.value for s in TenantStatus} == {"active", "suspended", "erased"}
