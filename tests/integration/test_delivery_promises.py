"""The delivery promises of the README, on the real Kafka and PostgreSQL, through the real
Delivery and EventTransaction, with handlers whose effects the test can count (a probe group of
the tests' own: tests/support/probe.py). A real handler's effect is idempotent by design, so it
would hide a broken inbox; the probe's is not."""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from adapters.kafka import dead_letters as dlq
from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.parked_events import PostgresParkedEvents
from consumers.delivery import DeadLetters
from contracts import codec, topics
from contracts.envelope import Envelope
from contracts.events import TenantDeactivated, TenantReactivated
from domain.errors import TransientError
from runtime.settings import Settings
from tests.support import names as ns
from tests.support import probe as pr
from tests.support.kafka import TopicTail, publish
from tests.support.stack import SessionWorker, TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack
LIMIT_S = 60.0


def _deactivated(tenant_id: str) -> Envelope:
    return codec.envelope_for(TenantDeactivated(tenant_id=tenant_id), source="urn:tests")


@pytest.fixture(autouse=True)
def topics_made(session_worker: SessionWorker) -> None:
    """The session worker made the topics (ensure_topics) before it became ready."""


@pytest.fixture
async def dead_letters(settings: Settings) -> AsyncIterator[TopicTail]:
    async with TopicTail(settings, topics.DLQ) as tail:
        yield tail


def _dead_letter(tail: TopicTail, group: str, event_id: str) -> Any:
    """The probe group's dead letter of ``event_id`` (the session worker reads the topic too)."""
    found = [
        r
        for r in _of_group(tail.records, group)
        if dict(r.headers).get("ce_id") == event_id.encode()
    ]
    return found[0] if found else None


def _of_group(records: list[Any], group: str) -> list[Any]:
    return [r for r in records if dict(r.headers).get(dlq.GROUP) == group.encode()]


async def test_a_redelivered_event_runs_its_effect_once(
    settings: Settings, pg: asyncpg.Connection, publisher: KafkaEventPublisher, tenants: TenantIds
) -> None:
    await pr.ensure_effects_table(pg)
    tenant_id = tenants.new()
    twice, sentinel = _deactivated(tenant_id), _deactivated(tenant_id)

    def handlers(group: str, pool: asyncpg.Pool) -> Any:
        return {TenantDeactivated: pr.counting_effect(pr.transaction(pool, settings, group))}

    async with pr.probe(settings, topics.LIFECYCLE, handlers) as delivery:
        for _ in range(3):
            await publish(publisher, twice)
        await publish(publisher, sentinel)  # same key, same partition: handled after the three
        await wait_until(
            lambda: pr.effects(pg, delivery.group, sentinel.id), LIMIT_S, what="the sentinel"
        )
        assert await pr.effects(pg, delivery.group, twice.id) == 1


async def test_a_poison_message_is_dead_lettered_as_handler_error_and_the_partition_moves_on(
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
    dead_letters: TopicTail,
) -> None:
    await pr.ensure_effects_table(pg)
    tenant_id = tenants.new()
    poison, after = _deactivated(tenant_id), _deactivated(tenant_id)
    calls: list[str] = []

    def handlers(group: str, pool: asyncpg.Pool) -> Any:
        counted = pr.counting_effect(pr.transaction(pool, settings, group))

        async def handle(decoded: Any) -> Any:
            calls.append(decoded.envelope.id)
            if decoded.envelope.id == poison.id:
                raise RuntimeError("a bug in the handler")
            return await counted(decoded)

        return {TenantDeactivated: handle}

    async with pr.probe(settings, topics.LIFECYCLE, handlers) as delivery:
        await publish(publisher, poison)
        await publish(publisher, after)
        record = await wait_until(
            lambda: _dead_letter(dead_letters, delivery.group, poison.id),
            LIMIT_S,
            what="the poison dead letter",
        )
        await wait_until(lambda: pr.effects(pg, delivery.group, after.id), LIMIT_S, what="after")

    headers = dict(record.headers)
    assert headers[dlq.REASON] == b"handler_error"
    assert b"a bug in the handler" in headers[dlq.DETAIL]
    assert headers[dlq.GROUP] == delivery.group.encode()
    assert record.value == codec.encode(poison)
    assert calls.count(poison.id) == settings.poison_redeliveries  # redelivered, then given up
    assert calls.index(after.id) > max(i for i, c in enumerate(calls) if c == poison.id)


async def test_an_event_no_handler_of_the_group_takes_is_dead_lettered_not_handled(
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
    dead_letters: TopicTail,
) -> None:
    await pr.ensure_effects_table(pg)
    tenant_id = tenants.new()
    unhandled = codec.envelope_for(TenantReactivated(tenant_id=tenant_id), source="urn:tests")
    after = _deactivated(tenant_id)

    def handlers(group: str, pool: asyncpg.Pool) -> Any:  # takes TenantDeactivated only
        return {TenantDeactivated: pr.counting_effect(pr.transaction(pool, settings, group))}

    async with pr.probe(settings, topics.LIFECYCLE, handlers) as delivery:
        await publish(publisher, unhandled)
        await publish(publisher, after)
        record = await wait_until(
            lambda: _dead_letter(dead_letters, delivery.group, unhandled.id),
            LIMIT_S,
            what="the dead letter",
        )
        await wait_until(lambda: pr.effects(pg, delivery.group, after.id), LIMIT_S, what="after")

    headers = dict(record.headers)
    assert headers[dlq.REASON] == b"not_handled"
    assert headers[dlq.GROUP] == delivery.group.encode()
    assert record.value == codec.encode(unhandled)


class _FailingFirst:
    """The real dead-letter publisher, failing its first send as an unreachable topic would."""

    def __init__(self, real: DeadLetters) -> None:
        self._real = real
        self.attempts: list[tuple[int, int, bool]] = []  # (partition, offset, succeeded)

    async def send(self, record: Any, *, group: str, reason: str, detail: str) -> None:
        first = not self.attempts
        self.attempts.append((record.partition, record.offset, not first))
        if first:
            raise ConnectionError("dead-letter topic unreachable")
        await self._real.send(record, group=group, reason=reason, detail=detail)


async def test_a_failed_dead_letter_publish_commits_nothing_and_the_record_comes_back(
    settings: Settings,
    pg: asyncpg.Connection,
    publisher: KafkaEventPublisher,
    tenants: TenantIds,
    dead_letters: TopicTail,
) -> None:
    await pr.ensure_effects_table(pg)
    tenant_id = tenants.new()
    after = _deactivated(tenant_id)
    failing: list[_FailingFirst] = []

    def wrap(real: DeadLetters) -> DeadLetters:
        failing.append(_FailingFirst(real))
        return failing[0]

    def handlers(group: str, pool: asyncpg.Pool) -> Any:
        return {TenantDeactivated: pr.counting_effect(pr.transaction(pool, settings, group))}

    async with pr.probe(settings, topics.LIFECYCLE, handlers, dead_letters=wrap) as delivery:
        key = topics.partition_key(tenant_id)
        await publisher.publish(topics.LIFECYCLE, key, b"\xff not json", [])
        await publish(publisher, after)
        (record,) = await wait_until(
            lambda: _of_group(dead_letters.with_key(key), delivery.group),
            LIMIT_S,
            what="the dead letter, second try",
        )
        await wait_until(lambda: pr.effects(pg, delivery.group, after.id), LIMIT_S, what="after")

    (sent,) = failing
    where = (record.partition, record.offset)
    assert dict(record.headers)[dlq.REASON] == b"invalid_json"
    # The same record, failed then published: nothing was committed past it in between.
    source = (
        int(dict(record.headers)[dlq.SOURCE_PARTITION]),
        int(dict(record.headers)[dlq.SOURCE_OFFSET]),
    )
    assert sent.attempts == [(*source, False), (*source, True)], (sent.attempts, where)


async def test_a_record_failing_past_its_retry_attempts_is_parked_and_others_go_on(
    settings: Settings, pg: asyncpg.Connection, publisher: KafkaEventPublisher, tenants: TenantIds
) -> None:
    await pr.ensure_effects_table(pg)
    stuck = tenants.new()
    failing, behind = _deactivated(stuck), _deactivated(stuck)
    calls: list[str] = []
    fast = settings.model_copy(
        update={
            "retry_attempts": 3,
            "retry_base_delay_s": 0.01,
            "retry_max_delay_s": 0.05,
            "redelivery_max_attempts": 100_000,
        }
    )

    def handlers(group: str, pool: asyncpg.Pool) -> Any:
        counted = pr.counting_effect(pr.transaction(pool, fast, group))

        async def handle(decoded: Any) -> Any:
            calls.append(decoded.envelope.id)
            if decoded.envelope.subject == stuck:
                raise TransientError("the tenant's dependency is down")
            return await counted(decoded)

        return {TenantDeactivated: handle}

    def parking(pool: asyncpg.Pool) -> PostgresParkedEvents:
        return PostgresParkedEvents(pool, fast.names.control_schema)

    other = tenants.new()
    served = _deactivated(other)
    async with pr.probe(fast, topics.LIFECYCLE, handlers, parking=parking) as delivery:
        await publish(publisher, failing)
        await publish(publisher, behind)
        await publish(publisher, served)
        await wait_until(lambda: pr.effects(pg, delivery.group, served.id), LIMIT_S, what="other")

        async def both_parked() -> list[Any] | None:
            rows = await pg.fetch(
                f"SELECT event_id, attempts, status FROM {ns.CONTROL}.parked_events"
                " WHERE consumer_group = $1 AND tenant_id = $2 ORDER BY seq",
                delivery.group,
                stuck,
            )
            return rows if len(rows) == 2 else None

        parked = await wait_until(both_parked, LIMIT_S, what="the tenant's records parked")

    assert [(r["event_id"], r["status"]) for r in parked] == [
        (failing.id, "parked"),
        (behind.id, "parked"),
    ]
    assert parked[0]["attempts"] == fast.retry_attempts
    assert calls.count(failing.id) == fast.retry_attempts  # then parked, not retried in place
    assert behind.id not in calls  # queued behind the parked record without running


class _DownParking(PostgresParkedEvents):
    """Parking whose database is down: every park fails transiently."""

    async def park(self, *args: Any, **kwargs: Any) -> bool:
        raise TransientError("database is down")


async def test_a_record_that_cannot_be_parked_is_handed_back_to_kafka(
    settings: Settings, pg: asyncpg.Connection, publisher: KafkaEventPublisher, tenants: TenantIds
) -> None:
    stuck = tenants.new()
    failing = _deactivated(stuck)
    calls: list[str] = []
    fast = settings.model_copy(
        update={
            "retry_attempts": 2,
            "retry_base_delay_s": 0.01,
            "retry_max_delay_s": 0.05,
            "redelivery_max_attempts": 100_000,
        }
    )

    def handlers(group: str, pool: asyncpg.Pool) -> Any:
        async def handle(decoded: Any) -> Any:
            calls.append(decoded.envelope.id)
            raise TransientError("the tenant's dependency is down")

        return {TenantDeactivated: handle}

    async with pr.probe(
        fast, topics.LIFECYCLE, handlers, parking=lambda pool: _DownParking(pool, ns.CONTROL)
    ):
        await publish(publisher, failing)
        # Redelivered by Kafka after each delivery's attempts: more calls than one delivery has.
        await wait_until(
            lambda: calls.count(failing.id) > 2 * fast.retry_attempts,
            LIMIT_S,
            what="the record to come back from Kafka",
        )
    assert set(calls) == {failing.id}
