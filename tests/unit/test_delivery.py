"""Delivery's policy on in-memory fakes of its ports: retries, hand-backs, dead letters, commits,
the circuit breaker and the redelivery budget. No Kafka, no database: each test runs in ms."""

from typing import Any

from consumers.delivery import HANDLER_ERROR, NOT_HANDLED
from contracts import codec
from contracts.events import TenantRequested
from domain.circuit_breaker import CircuitBreaker, CircuitState
from domain.errors import PermanentError, TransientError
from domain.redelivery import RETRIES_EXHAUSTED
from runtime.logging import _merge_event
from tests.unit.delivery_fakes import (
    Clock,
    FakeDeadLetters,
    Partition,
    ScriptedHandler,
    make_delivery,
    requested,
    retry_policy,
)


def _state(breaker: CircuitBreaker) -> CircuitState:
    """Read through a call: the state changes between reads, which mypy can't see."""
    return breaker.state


def _flaky(times: int) -> ScriptedHandler:
    return ScriptedHandler(*[TransientError("connection reset") for _ in range(times)])


async def test_transient_failures_are_retried_and_the_success_is_committed() -> None:
    handler, part = _flaky(2), Partition()
    msg = part.message(requested("acme"))

    await make_delivery({TenantRequested: handler}, retry=retry_policy(3))(msg)

    assert len(handler.calls) == 3 and msg.nacks == 0
    assert part.consumer.commits == [1]


async def test_the_offset_is_committed_only_after_the_handler_succeeded() -> None:
    part = Partition()
    seen_at_handler: list[list[int]] = []

    async def handler(decoded: Any) -> Any:
        seen_at_handler.append(list(part.consumer.commits))
        return None

    await make_delivery({TenantRequested: handler})(part.message(requested("acme")))

    assert seen_at_handler == [[]] and part.consumer.commits == [1]


async def test_after_the_retry_attempts_the_record_is_handed_back_uncommitted() -> None:
    handler, part = _flaky(100), Partition()
    msg = part.message(requested("acme"))

    await make_delivery({TenantRequested: handler}, retry=retry_policy(3))(msg)

    assert len(handler.calls) == 3 and msg.nacks == 1
    assert part.consumer.commits == []


async def test_hand_backs_end_in_retries_exhausted_after_attempts_and_time() -> None:
    clock, dlq, part = Clock(), FakeDeadLetters(), Partition()
    delivery = make_delivery(
        {TenantRequested: _flaky(1000)},
        retry=retry_policy(3, budget_attempts=6, budget_s=60.0),
        dead_letters=dlq,
        clock=clock,
    )
    msg = part.message(requested("acme"))

    for _ in range(3):  # 9 attempts but no time elapsed: the time budget is not spent
        await delivery(msg)
    assert msg.nacks == 3 and dlq.sent == [] and part.consumer.commits == []

    clock.now += 60.0
    await delivery(msg)

    assert dlq.reasons == [RETRIES_EXHAUSTED] and part.consumer.commits == [1]
    record, _ = dlq.sent[0]
    assert record is msg.raw_message  # the original bytes and headers, untouched
    assert record.headers == [("h", b"\xff")]


async def test_an_unexpected_error_is_redelivered_then_dead_lettered_as_handler_error() -> None:
    dlq, part = FakeDeadLetters(), Partition()
    handler = ScriptedHandler(then=RuntimeError("bug"))
    delivery = make_delivery({TenantRequested: handler}, retry=retry_policy(poison=2),
                             dead_letters=dlq)
    msg = part.message(requested("acme"))

    await delivery(msg)
    assert msg.nacks == 1 and dlq.sent == [] and part.consumer.commits == []
    await delivery(msg)

    assert dlq.reasons == [HANDLER_ERROR] and part.consumer.commits == [1]
    assert len(handler.calls) == 2  # a bug is not retried within a delivery


async def test_a_permanent_error_is_dead_lettered_with_its_reason() -> None:
    dlq, part = FakeDeadLetters(), Partition()
    handler = ScriptedHandler(PermanentError("database_error", "boom"))

    await make_delivery({TenantRequested: handler}, dead_letters=dlq)(
        part.message(requested("acme"))
    )

    assert dlq.reasons == ["database_error"] and part.consumer.commits == [1]


async def test_a_type_the_group_does_not_handle_is_dead_lettered_not_handled() -> None:
    dlq, part = FakeDeadLetters(), Partition()

    await make_delivery({}, dead_letters=dlq)(part.message(requested("acme")))

    assert dlq.reasons == [NOT_HANDLED] and part.consumer.commits == [1]


async def test_an_invalid_record_is_dead_lettered() -> None:
    dlq, part = FakeDeadLetters(), Partition()

    await make_delivery({}, dead_letters=dlq)(part.message(b"not json"))

    assert dlq.reasons == ["invalid_json"] and part.consumer.commits == [1]


async def test_a_dead_letter_that_cannot_be_published_commits_nothing() -> None:
    dlq, part = FakeDeadLetters(), Partition()
    dlq.failing = True
    msg = part.message(requested("acme"))

    await make_delivery({}, dead_letters=dlq)(msg)

    assert part.consumer.commits == [] and msg.nacks == 1  # it comes back


async def test_the_circuit_breaker_opens_on_failures_and_a_success_closes_it() -> None:
    clock, part = Clock(), Partition()
    handler = ScriptedHandler(TransientError("down"), TransientError("down"))
    delivery = make_delivery({TenantRequested: handler}, retry=retry_policy(2))
    delivery.breaker = CircuitBreaker(2, reset_timeout_s=0.001, clock=clock)

    first = part.message(requested("acme"))
    await delivery(first)
    assert _state(delivery.breaker) == CircuitState.OPEN and first.nacks == 1

    await delivery(first)  # waits out the breaker, then the trial call succeeds

    assert _state(delivery.breaker) == CircuitState.CLOSED and part.consumer.commits == [1]


async def test_a_binary_mode_record_is_decoded_from_its_ce_headers() -> None:
    """The CloudEvents Kafka binding's binary mode: attributes in ce_* headers, data as value."""
    handler, part, dlq = ScriptedHandler(), Partition(), FakeDeadLetters()
    value, headers = codec.encode_record(requested("acme"), "binary")
    msg = part.message(value, key=b"acme")
    msg.raw_message.headers = [(name, text.encode()) for name, text in headers.items()]

    await make_delivery({TenantRequested: handler}, dead_letters=dlq)(msg)

    assert dlq.reasons == [] and len(handler.calls) == 1
    assert part.consumer.commits == [1]


async def test_a_line_logged_by_a_handler_carries_the_events_fields() -> None:
    """The per-record path names its fields where the batch path does (runtime.logging)."""
    part, seen = Partition(), {}
    env = requested("acme")
    msg = part.message(env)

    async def handler(decoded: Any) -> Any:
        seen.update(_merge_event(None, "info", {"event": "x"}))
        return None

    await make_delivery({TenantRequested: handler})(msg)

    record = msg.raw_message
    assert seen == {
        "event": "x", "group": "g", "topic": record.topic, "partition": record.partition,
        "offset": record.offset, "event_id": env.id, "event_type": "TenantRequested",
        "correlation_id": env.correlationid, "tenant_id": env.subject,
    }
