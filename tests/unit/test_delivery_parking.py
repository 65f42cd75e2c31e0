"""Parking and re-driving on in-memory fakes: a tenant whose event keeps failing waits in the
parking lot, its later events queue behind it, the partition's other tenants go on."""

from typing import Any

import pytest

from consumers.redriver import Redriver
from contracts.events import TenantDeactivated, TenantRequested
from domain.errors import TransientError
from domain.redelivery import RETRIES_EXHAUSTED
from tests.unit.delivery_fakes import (
    Clock,
    FakeDeadLetters,
    FakeParkedEvents,
    Partition,
    deactivated,
    make_delivery,
    requested,
    retry_policy,
)


class TenantLock:
    """A handler that fails transiently for the tenants in ``blocked`` (their lock is held)."""

    def __init__(self, *blocked: str) -> None:
        self.blocked = set(blocked)
        self.applied: list[str] = []  # event ids, in the order they took effect
        self.calls = 0

    async def __call__(self, decoded: Any) -> Any:
        self.calls += 1
        if decoded.envelope.subject in self.blocked:
            raise TransientError("lock_not_available")
        self.applied.append(decoded.envelope.id)
        return None


def _setup(lock: TenantLock, **retry: Any) -> tuple[Any, FakeParkedEvents, Clock, FakeDeadLetters]:
    clock, dlq = Clock(), FakeDeadLetters()
    parking = FakeParkedEvents(clock)
    delivery = make_delivery(
        {TenantRequested: lock, TenantDeactivated: lock},
        retry=retry_policy(2, **retry),
        parking=parking,
        dead_letters=dlq,
        clock=clock,
    )
    return delivery, parking, clock, dlq


async def test_a_blocked_tenant_is_parked_its_later_events_queue_and_others_go_on() -> None:
    lock, part = TenantLock("acme"), Partition()
    delivery, parking, clock, _ = _setup(lock, budget_attempts=100, budget_s=3600)
    a1, a2, b1 = requested("acme"), deactivated("acme"), requested("bravo")

    for envelope in (a1, a2, b1):
        await delivery(part.message(envelope))

    assert lock.applied == [b1.id]  # bravo was served; acme's second event never ran
    assert parking.statuses("acme") == ["parked", "parked"]
    assert part.consumer.commits == [1, 2, 3]  # each offset after its park or its effect
    assert lock.calls == 2 + 1  # a1's two attempts, b1; a2 queued without running

    redriver = Redriver(delivery, poll_s=0.01)
    clock.now += 10
    assert await redriver.drive_one()  # still blocked: a1 waits again, a2 stays behind it
    assert lock.applied == [b1.id] and parking.statuses("acme") == ["parked", "parked"]

    lock.blocked.clear()  # the restore released the tenant's lock
    clock.now += 10
    while await redriver.drive_one():
        clock.now += 10

    assert lock.applied == [b1.id, a1.id, a2.id]  # acme's events in their order
    assert parking.statuses("acme") == ["done", "done"]
    c = requested("acme")
    await delivery(part.message(c))  # nothing parked any more: runs at once
    assert lock.applied[-1] == c.id


async def test_a_redelivered_parked_record_is_a_no_op() -> None:
    lock, part = TenantLock("acme"), Partition()
    delivery, parking, _, _ = _setup(lock, budget_attempts=100, budget_s=3600)
    msg = part.message(requested("acme"))
    await delivery(msg)
    calls = lock.calls

    await delivery(msg)  # e.g. a crash between the park and the offset commit

    assert lock.calls == calls and len(parking.rows) == 1
    assert part.consumer.commits == [1, 1]


async def test_a_finished_parked_record_redelivered_is_not_run_again() -> None:
    lock, part = TenantLock("acme"), Partition()
    delivery, parking, clock, _ = _setup(lock, budget_attempts=100, budget_s=3600)
    msg = part.message(requested("acme"))
    await delivery(msg)
    lock.blocked.clear()
    clock.now += 10
    assert await Redriver(delivery, 0.01).drive_one()
    applied = list(lock.applied)

    await delivery(msg)

    assert lock.applied == applied and parking.statuses("acme") == ["done"]


async def test_when_parking_fails_the_record_is_handed_back_uncommitted() -> None:
    lock, part = TenantLock("acme"), Partition()
    delivery, parking, _, _ = _setup(lock, budget_attempts=100, budget_s=3600)
    msg = part.message(requested("acme"))
    original_holds = parking.holds

    async def park_down(*args: Any, **kwargs: Any) -> bool:
        raise TransientError("parking database down")

    parking.park = park_down  # type: ignore[method-assign]
    await delivery(msg)

    assert msg.nacks == 1 and part.consumer.commits == [] and parking.rows == []
    assert original_holds is not None


async def test_a_parked_record_that_keeps_failing_ends_as_retries_exhausted() -> None:
    lock, part = TenantLock("acme"), Partition()
    delivery, parking, clock, dlq = _setup(lock, budget_attempts=5, budget_s=60)
    msg = part.message(requested("acme"))
    await delivery(msg)  # 2 attempts, parked
    redriver = Redriver(delivery, 0.01)

    for _ in range(3):  # attempts 3, 4, 5: the time budget is not spent yet
        clock.now += 10
        assert await redriver.drive_one()
    assert dlq.sent == [] and parking.statuses("acme") == ["parked"]
    clock.now += 60
    assert await redriver.drive_one()

    assert dlq.reasons == [RETRIES_EXHAUSTED] and parking.statuses("acme") == ["dead_lettered"]
    record, _ = dlq.sent[0]
    assert record.value == msg.raw_message.value and record.key == b"acme"
    assert record.headers == (("h", b"\xff"),)  # original headers kept


async def test_a_dead_letter_that_fails_while_redriving_leaves_the_event_parked() -> None:
    lock, part = TenantLock("bravo"), Partition()
    delivery, parking, clock, dlq = _setup(lock, budget_attempts=3, budget_s=0)
    await delivery(part.message(requested("bravo")))  # 2 attempts: parked
    dlq.failing = True
    clock.now += 10

    with pytest.raises(ConnectionError):
        await Redriver(delivery, 0.01).drive_one()  # attempt 3 exhausts; the DLQ is down

    assert parking.statuses("bravo") == ["parked"] and parking.rows[0].attempts == 2


async def test_a_budget_spent_before_parking_dead_letters_at_once() -> None:
    lock, part = TenantLock("acme"), Partition()
    delivery, parking, _, dlq = _setup(lock, budget_attempts=1, budget_s=0)

    await delivery(part.message(deactivated("acme")))

    assert dlq.reasons == [RETRIES_EXHAUSTED] and parking.rows == []
    assert part.consumer.commits == [1]
