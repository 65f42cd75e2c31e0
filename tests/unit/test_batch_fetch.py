"""The batch subscriber's fetch: after a fetch that found nothing, the next one follows at once
(FastStream's own sleeps batch_timeout_ms first, deaf to records arriving meanwhile)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber

from consumers.batch_fetch import PromptBatchSubscriber, prompt
from consumers.subscriptions import subscribe
from runtime.settings import Settings
from tests.unit.delivery_fakes import FakeDeadLetters


class FakeConsumer:
    """getmany answers the scripted fetches in turn, and records how it was asked."""

    def __init__(self, *fetches: dict[str, list[str]]) -> None:
        self.fetches = list(fetches)
        self.calls: list[tuple[int, int | None]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[str, list[str]]:
        self.calls.append((timeout_ms, max_records))
        return self.fetches.pop(0)


def _subscriber(timeout_ms: int = 50, max_records: int = 500) -> PromptBatchSubscriber:
    broker = KafkaBroker("localhost:9")  # never connected: the subscriber is only built
    return prompt(broker.subscriber("t", batch=True, batch_timeout_ms=timeout_ms,
                                    max_records=max_records, group_id="g"))


async def test_an_empty_fetch_is_answered_without_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(anyio, "sleep", sleep)  # FastStream's get_msg sleeps through anyio
    sub = _subscriber(timeout_ms=50, max_records=7)
    consumer = FakeConsumer({}, {"p0": ["a", "b"], "p1": ["c"]})

    assert await sub.get_msg(consumer) == ()
    assert await sub.get_msg(consumer) == ("a", "b", "c")  # every partition's records, in order
    assert slept == []
    assert consumer.calls == [(50, 7), (50, 7)]  # the fetch itself still waits the timeout


async def test_faststreams_own_batch_subscriber_sleeps_after_an_empty_fetch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The behaviour PromptBatchSubscriber removes: if FastStream stops sleeping, this fails
    and the subclass can go."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(anyio, "sleep", sleep)
    broker = KafkaBroker("localhost:9")
    sub = broker.subscriber("t", batch=True, batch_timeout_ms=50, group_id="g")
    assert await sub.get_msg(FakeConsumer({})) == ()
    assert slept == [0.05]


def test_prompt_refuses_what_is_not_fastreams_batch_subscriber() -> None:
    broker = KafkaBroker("localhost:9")
    with pytest.raises(TypeError, match="BatchSubscriber"):
        prompt(broker.subscriber("t", group_id="g"))
    assert issubclass(PromptBatchSubscriber, BatchSubscriber)


def _subscribed(settings: Settings, *, per_record_too: bool = False) -> list[Any]:
    """The subscribers subscribe() makes for a batched group (and a per-record one)."""
    broker = KafkaBroker("localhost:9")  # never connected: the subscribers are only built

    @asynccontextmanager
    async def batches() -> AsyncIterator[Any]:
        yield None

    subscribe(broker, settings, group="provisioner", topic="tenants.requests", handlers={},
              dead_letters=FakeDeadLetters(), description="d", batches=batches)
    if per_record_too:
        subscribe(broker, settings, group="lifecycle", topic="tenants.lifecycle", handlers={},
                  dead_letters=FakeDeadLetters(), description="d")
    return list(broker.subscribers)


def test_the_batch_path_subscribes_prompt_subscribers() -> None:
    """subscribe() with batches: every consumer of the group is a PromptBatchSubscriber."""
    settings = Settings(pg_dsn="postgresql://u:p@127.0.0.1:1/db",  # type: ignore[arg-type]
                        consumer_concurrency=2, consumer_batch_max_records=50)
    subscribers = _subscribed(settings)
    assert len(subscribers) == 2
    assert all(type(s) is PromptBatchSubscriber for s in subscribers)


def test_every_consumer_of_a_group_fetches_with_the_configured_wait() -> None:
    """kafka_fetch_max_wait_ms reaches every consumer, per record and batched: aiokafka's 500 ms
    left a partition with a backlog waiting behind a drained partition's empty fetch."""
    settings = Settings(pg_dsn="postgresql://u:p@127.0.0.1:1/db",  # type: ignore[arg-type]
                        consumer_concurrency=2, kafka_fetch_max_wait_ms=70)
    subscribers = _subscribed(settings, per_record_too=True)
    assert len(subscribers) >= 3
    # FastStream keeps a subscriber's consumer arguments here (0.7); a rename fails this loudly.
    assert [s._connection_args["fetch_max_wait_ms"] for s in subscribers] == [70] * len(subscribers)
