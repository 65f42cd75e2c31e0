"""OutboxRelay on fakes: the backlog is counted when a batch catches up, and at most every
BACKLOG_EVERY_S while the relay is busy (counting scans every unsent row)."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from producers import outbox_relay
from producers.outbox_relay import OutboxRelay
from runtime import metrics
from runtime.settings import Settings


class Outbox:
    """``unsent`` rows numbered from 1; ``backlog`` counts its calls."""

    def __init__(self, rows: int) -> None:
        self.left = list(range(1, rows + 1))
        self.sent: list[int] = []
        self.counted = 0

    async def unsent(self, conn: Any, limit: int) -> list[Any]:
        return [_Row(i) for i in self.left[:limit]]

    async def mark_sent(self, conn: Any, ids: list[int]) -> None:
        self.sent += ids
        self.left = [i for i in self.left if i not in ids]

    async def backlog(self, conn: Any) -> tuple[int, float]:
        self.counted += 1
        return len(self.left), 0.0

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator["Outbox"]:
        yield self


class _Row:
    def __init__(self, id_: int) -> None:
        self.id, self.topic, self.key, self.payload, self.headers = id_, "events", b"k", b"{}", {}


class Publisher:
    def __init__(self) -> None:
        self.published = 0

    async def publish_many(self, messages: list[Any]) -> None:
        self.published += len(messages)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def relay(outbox: Outbox, monkeypatch: pytest.MonkeyPatch, clock: Clock) -> OutboxRelay:
    monkeypatch.setattr(outbox_relay.time, "monotonic", clock)
    settings = Settings(pg_dsn="postgresql://u:p@127.0.0.1:1/db", outbox_batch_size=10)  # type: ignore[arg-type]
    return OutboxRelay(settings, outbox, outbox, Publisher())  # type: ignore[arg-type]


def _gauge() -> float:
    return metrics.OUTBOX_BACKLOG._value.get()  # type: ignore[attr-defined, no-any-return]


async def test_a_busy_relay_counts_its_backlog_at_most_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox, clock = Outbox(45), Clock()
    r = relay(outbox, monkeypatch, clock)

    assert await r.drain_once() == 10 and outbox.counted == 1 and _gauge() == 35
    assert await r.drain_once() == 10 and outbox.counted == 1  # full batch, within the interval
    clock.now += outbox_relay.BACKLOG_EVERY_S
    assert await r.drain_once() == 10 and outbox.counted == 2 and _gauge() == 15
    assert await r.drain_once() == 10 and outbox.counted == 2


async def test_a_batch_that_catches_up_always_counts_so_the_gauge_reaches_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox, clock = Outbox(15), Clock()
    r = relay(outbox, monkeypatch, clock)

    assert await r.drain_once() == 10 and outbox.counted == 1
    assert await r.drain_once() == 5 and outbox.counted == 2 and _gauge() == 0
    assert await r.drain_once() == 0 and outbox.counted == 3  # idle: still counted
    assert outbox.sent == list(range(1, 16))
