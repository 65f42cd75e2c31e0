"""BatchDelivery's policy on fakes: one transaction per fetched batch with a savepoint per event,
held-back tenants, the per-record path after the commit, offsets never past an unsettled record.
The handlers run through a real EventTransaction on the in-memory unit of work."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from consumers.batch_delivery import BatchDelivery
from contracts.envelope import Envelope
from contracts.events import TenantDeactivated, TenantRequested, TenantSuspended
from domain.errors import PermanentError, TransientError
from runtime.logging import _merge_event
from service.event_batch import EventBatch
from service.event_transaction import EventTransaction
from tests.unit.delivery_fakes import (
    Clock,
    FakeDeadLetters,
    FakeParkedEvents,
    Partition,
    make_delivery,
    requested,
    retry_policy,
)
from tests.unit.fakes import FakeStores


class Effects:
    """A handler on the event transaction: each event's effect answers TenantSuspended, or
    raises the next error scripted for its event id."""

    def __init__(self, tx: EventTransaction[Any], clock: Clock | None = None,
                 step_s: float = 0.0) -> None:
        self.tx, self.clock, self.step_s = tx, clock, step_s
        self.writes = True  # each effect sends a statement (False: answered without one)
        self.script: dict[str, list[BaseException]] = {}
        self.calls: list[str] = []

    def fail(self, env: Envelope, *errors: BaseException) -> None:
        self.script[env.id] = list(errors)

    async def __call__(self, decoded: Any) -> Any:
        env = decoded.envelope

        async def effect(uow: Any) -> TenantSuspended:
            self.calls.append(env.id)
            if self.writes:
                await uow.tenants.count_live()
            if self.clock is not None:
                self.clock.now += self.step_s
            if self.script.get(env.id):
                raise self.script[env.id].pop(0)
            return TenantSuspended(tenant_id=env.subject)

        return await self.tx.run(env, effect, source="urn:t")


class Setup:
    def __init__(self, *, parking: FakeParkedEvents | None = None, max_s: float = 60.0,
                 retry: Any = None, batches: Any = None) -> None:
        self.stores = FakeStores()
        self.tx = EventTransaction(self.stores, "g")
        self.clock = Clock()
        self.effects = Effects(self.tx, self.clock)
        self.dlq = FakeDeadLetters()
        self.delivery = make_delivery(
            {TenantRequested: self.effects, TenantDeactivated: self.effects},
            dead_letters=self.dlq, parking=parking, retry=retry or retry_policy(3),
            clock=self.clock,
        )
        self.batch = BatchDelivery(
            self.delivery, batches or self.tx.batch, batchable=frozenset({"TenantRequested"}),
            max_transaction_s=max_s, clock=self.clock,
        )
        self.part = Partition()

    async def deliver(self, *envs: Envelope) -> list[Any]:
        records = [self.part.message(e).raw_message for e in envs]
        await self.batch(records, self.part.consumer)
        return records

    @property
    def committed(self) -> list[str]:
        """Event ids whose result committed, in commit order."""
        return [e.causationid or "" for e in self.stores.results]


def _of(envs: list[Envelope]) -> list[str]:
    return [e.id for e in envs]


async def test_a_failing_event_is_undone_alone_and_its_tenants_later_events_follow_in_order() -> None:
    s = Setup()
    a1, b1, a2, b2, a3 = (requested(t) for t in ("acme", "beta", "acme", "beta", "acme"))
    s.effects.fail(a1, TransientError("lock timeout"))

    await s.deliver(a1, b1, a2, b2, a3)

    # beta's events committed in the batch's transaction; acme's after it, one by one, in order
    assert s.committed == _of([b1, b2, a1, a2, a3])
    assert s.stores.units[0].committed is True
    assert s.part.consumer.commits[-1] == 5 and s.part.consumer.seeks == []
    assert s.part.consumer.commits == sorted(s.part.consumer.commits)
    assert {("g", e.id) for e in (a1, a2, a3, b1, b2)} <= s.stores.state.inbox


async def test_a_permanent_error_dead_letters_only_that_record() -> None:
    s = Setup()
    a1, b1, a2 = requested("acme"), requested("beta"), requested("acme")
    # it fails in the batch's savepoint, and again on its own
    s.effects.fail(a1, PermanentError("database_error", "bad"), PermanentError("database_error", "bad"))

    records = await s.deliver(a1, b1, a2)

    assert [r for r, _ in s.dlq.sent] == [records[0]] and s.dlq.reasons == ["database_error"]
    assert s.committed == _of([b1, a2])
    assert s.part.consumer.commits[-1] == 3


async def test_duplicate_ids_in_a_batch_and_in_the_inbox_run_once() -> None:
    s = Setup()
    seen, fresh = requested("acme"), requested("beta")
    s.stores.state.inbox.add(("g", seen.id))

    await s.deliver(fresh, seen, fresh, fresh)

    assert s.effects.calls == [fresh.id]
    assert s.committed == [fresh.id] and s.part.consumer.commits == [4]


async def test_offsets_are_committed_only_after_the_batch_transaction() -> None:
    s = Setup()
    commits_seen: list[list[int]] = []

    @asynccontextmanager
    async def watched() -> AsyncIterator[EventBatch]:
        async with s.tx.batch() as batch:
            yield batch
            commits_seen.append(list(s.part.consumer.commits))

    s.batch._batches = watched  # type: ignore[assignment]
    await s.deliver(requested("acme"), requested("beta"))

    assert commits_seen == [[]] and s.part.consumer.commits == [2]


async def test_a_batch_that_cannot_commit_goes_record_by_record() -> None:
    s = Setup()

    @asynccontextmanager
    async def lost_at_commit() -> AsyncIterator[EventBatch]:
        async with s.tx.batch() as batch:
            yield batch
            raise TransientError("connection lost")

    s.batch._batches = lost_at_commit  # type: ignore[assignment]
    a1, b1, a2 = requested("acme"), requested("beta"), requested("acme")

    await s.deliver(a1, b1, a2)

    assert s.stores.units[0].committed is False
    assert s.committed == _of([a1, b1, a2])  # each in a transaction of its own, in order
    assert s.part.consumer.commits == [1, 2, 3]


async def test_a_dead_letter_that_cannot_be_sent_keeps_the_record_and_its_partition() -> None:
    s = Setup()
    b1, a1, b2, a2 = requested("beta"), requested("acme"), requested("beta"), requested("acme")
    s.effects.fail(a1, PermanentError("database_error", "bad"), PermanentError("database_error", "bad"))
    s.dlq.failing = True

    await s.deliver(b1, a1, b2, a2)

    assert s.part.consumer.seeks == [(0, 1)]  # back to a1
    assert s.part.consumer.commits == [1]  # b1 only: never past a1
    assert a2.id not in s.effects.calls


async def test_a_handed_back_record_takes_its_partitions_suffix_with_it() -> None:
    s = Setup(retry=retry_policy(3))
    b1, a1, b2, a2 = requested("beta"), requested("acme"), requested("beta"), requested("acme")
    s.effects.fail(a1, *[TransientError("down") for _ in range(4)])

    await s.deliver(b1, a1, b2, a2)

    assert s.part.consumer.seeks == [(0, 1)] and s.part.consumer.commits == [1]
    assert s.committed == _of([b1, b2]) and a2.id not in s.effects.calls

    # Kafka redelivers from a1: b2 is a duplicate now, acme's events run in order.
    s.part._next = 1
    await s.deliver(a1, b2, a2)
    assert s.committed == _of([b1, b2, a1, a2])
    assert s.part.consumer.commits[-1] == 4


async def test_tenants_with_parked_events_wait_and_parking_is_asked_once_per_batch() -> None:
    clock = Clock()
    parking = FakeParkedEvents(clock)
    s = Setup(parking=parking)
    blocker = s.part.message(requested("acme")).raw_message
    from consumers.parking import parked_record
    await parking.park("g", "acme", "old", parked_record(blocker), attempts=5, age_s=0,
                       delay_s=1, error="x")
    a1, b1 = requested("acme"), requested("beta")

    await s.deliver(a1, b1)

    assert parking.lookups == 1
    assert s.committed == [b1.id] and a1.id not in s.effects.calls
    assert parking.statuses("acme") == ["parked", "parked"]  # a1 queued behind
    assert s.part.consumer.commits[-1] == 3


async def test_a_long_batch_commits_as_it_goes_and_a_held_tenant_stays_held() -> None:
    s = Setup(max_s=1.0)
    s.effects.step_s = 1.0  # every effect takes the whole budget
    a1, b1, a2, b2 = requested("acme"), requested("beta"), requested("acme"), requested("beta")
    s.effects.fail(a1, TransientError("lock timeout"))

    await s.deliver(a1, b1, a2, b2)

    batch_units = [u for u in s.stores.units if u.what == "g batch"]
    assert len(batch_units) >= 2 and all(u.committed for u in batch_units)
    assert s.committed == _of([b1, b2, a1, a2])
    assert s.part.consumer.commits[-1] == 4


async def test_a_batch_answered_without_statements_is_one_transaction_however_long() -> None:
    s = Setup(max_s=1.0)
    s.effects.step_s, s.effects.writes = 1.0, False  # past the budget, yet no effect wrote
    envs = [requested(t) for t in ("acme", "beta", "acme", "gamma")]

    await s.deliver(*envs)

    batch_units = [u for u in s.stores.units if u.what == "g batch"]
    assert len(batch_units) == 1 and batch_units[0].committed
    assert s.committed == _of(envs)
    assert s.part.consumer.commits[-1] == 4


async def test_unbatchable_and_invalid_records_go_one_by_one_in_order() -> None:
    s = Setup()
    from contracts import codec
    from tests.unit.delivery_fakes import deactivated
    d1, a1, b1 = deactivated("acme"), requested("acme"), requested("beta")
    records = [s.part.message(d1).raw_message, s.part.message(b"{not json").raw_message,
               s.part.message(a1).raw_message, s.part.message(b1).raw_message]
    assert codec  # the invalid one is raw bytes

    await s.batch(records, s.part.consumer)

    assert s.committed == _of([b1, d1, a1])  # acme's batchable one waited for its deactivation
    assert s.dlq.reasons == ["invalid_json"] or len(s.dlq.sent) == 1
    assert s.part.consumer.commits[-1] == 4


async def test_a_failed_parking_lookup_sends_the_batch_one_by_one_with_backoff_not_back_to_kafka(
) -> None:
    # The database is down when the batch asks which tenants wait: seeking back at once would
    # spin on the outage (no backoff, no breaker); the per-record path retries with both.
    parking = FakeParkedEvents(Clock())
    parking.lookup_failures = 1
    s = Setup(parking=parking)
    failures: list[int] = []
    record_failure = s.delivery.breaker.record_failure
    s.delivery.breaker.record_failure = lambda: (failures.append(1), record_failure())[1]  # type: ignore[method-assign]
    a1, b1 = requested("acme"), requested("beta")

    await s.deliver(a1, b1)

    assert s.part.consumer.seeks == []
    assert s.committed == [a1.id, b1.id]
    assert failures, "the outage was not counted by the circuit breaker"
    assert s.part.consumer.commits[-1] == 2


async def test_every_event_of_a_batch_is_timed_as_one_on_its_own_would_be() -> None:
    """/metrics' handler duration (decode to durable commit) counts the batched events too, not
    only those that took the per-record path."""
    from prometheus_client import REGISTRY

    def timed() -> float:
        return REGISTRY.get_sample_value(
            "tenant_handler_duration_seconds_count", {"group": "g", "type": "TenantRequested"}
        ) or 0.0

    s = Setup()
    before = timed()
    await s.deliver(requested("acme"), requested("beta"), requested("acme"))
    assert s.stores.units[0].committed is True and len(s.committed) == 3
    assert timed() - before == 3


async def test_a_line_logged_by_a_batch_event_carries_that_events_fields_and_no_later_line_does() -> None:
    s = Setup()
    a, b = requested("acme"), requested("beta")
    seen: dict[str, dict[str, Any]] = {}
    inner = s.effects

    async def logging_effects(decoded: Any) -> Any:
        # what a line logged inside the effect would carry, its own ``tenant_id`` aside
        seen[decoded.envelope.id] = _merge_event(None, "info", {"event": "x", "offset": -1})
        return await inner(decoded)

    s.delivery._handlers[TenantRequested.__name__] = logging_effects
    records = await s.deliver(a, b)

    for env, record in zip((a, b), records, strict=True):
        assert seen[env.id] == {
            "event": "x", "offset": -1,  # a field the line sets itself wins
            "group": "g", "topic": record.topic, "partition": record.partition,
            "event_id": env.id, "event_type": "TenantRequested",
            "correlation_id": env.correlationid, "tenant_id": env.subject,
        }
    assert _merge_event(None, "info", {"event": "after"}) == {"event": "after"}
