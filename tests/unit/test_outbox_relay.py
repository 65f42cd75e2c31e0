"""OutboxRelay on fakes: the backlog is counted when a batch catches up, and at most every
BACKLOG_EVERY_S while the relay is busy (counting scans every unsent row); a batch is marked
sent in the background while the next one is read and published, never publishing it twice
nor out of order."""

import asyncio
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

    async def unsent(self, conn: Any, limit: int, skip: Any = ()) -> list[Any]:
        return [_Row(i) for i in self.left if i not in skip][:limit]

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
        self.id, self.topic, self.payload, self.headers = id_, "events", b"{}", []
        self.key = str(id_).encode()


class Publisher:
    def __init__(self) -> None:
        self.published = 0
        self.keys: list[bytes] = []
        self.more = asyncio.Condition()

    async def publish_many(self, messages: list[Any]) -> None:
        self.published += len(messages)
        self.keys += [key for _, key, _, _ in messages]
        async with self.more:
            self.more.notify_all()

    async def reached(self, n: int) -> None:
        async with self.more:
            await self.more.wait_for(lambda: self.published >= n)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def relay(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, clock: Clock | None, publisher: Any = None
) -> OutboxRelay:
    if clock is not None:  # patches the time module itself: asyncio's timeouts stand still too
        monkeypatch.setattr(outbox_relay.time, "monotonic", clock)
    settings = Settings(pg_dsn="postgresql://u:p@127.0.0.1:1/db", outbox_batch_size=10)  # type: ignore[arg-type]
    return OutboxRelay(settings, outbox, outbox, publisher or Publisher())  # type: ignore[arg-type]


async def drained(r: OutboxRelay) -> int:
    """One batch published and marked sent."""
    n = await r.drain_once()
    await r.flush()
    return n


def _gauge() -> float:
    return metrics.OUTBOX_BACKLOG._value.get()  # type: ignore[attr-defined, no-any-return]


async def test_a_busy_relay_counts_its_backlog_at_most_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox, clock = Outbox(45), Clock()
    r = relay(outbox, monkeypatch, clock)

    assert await drained(r) == 10 and outbox.counted == 1 and _gauge() == 35
    assert await drained(r) == 10 and outbox.counted == 1  # full batch, within the interval
    clock.now += outbox_relay.BACKLOG_EVERY_S
    assert await drained(r) == 10 and outbox.counted == 2 and _gauge() == 15
    assert await drained(r) == 10 and outbox.counted == 2


async def test_a_batch_that_catches_up_always_counts_so_the_gauge_reaches_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox, clock = Outbox(15), Clock()
    r = relay(outbox, monkeypatch, clock)

    assert await drained(r) == 10 and outbox.counted == 1
    assert await drained(r) == 5 and outbox.counted == 2 and _gauge() == 0
    assert await drained(r) == 0 and outbox.counted == 3  # idle: still counted
    assert outbox.sent == list(range(1, 16))


class SlowOutbox(Outbox):
    """Its marks wait for ``release``; ``marking`` is set while one waits."""

    def __init__(self, rows: int) -> None:
        super().__init__(rows)
        self.release, self.marking = asyncio.Event(), asyncio.Event()
        self.fail_next_mark = False

    async def mark_sent(self, conn: Any, ids: list[int]) -> None:
        self.marking.set()
        await self.release.wait()
        self.marking.clear()
        if self.fail_next_mark:
            self.fail_next_mark = False
            raise ConnectionResetError("mark cut short")
        await super().mark_sent(conn, ids)


async def test_the_next_batch_is_published_while_the_last_is_being_marked_and_leaves_it_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox, publisher = SlowOutbox(25), Publisher()
    r = relay(outbox, monkeypatch, None, publisher)

    assert await r.drain_once() == 10
    await asyncio.wait_for(outbox.marking.wait(), 5)  # rows 1-10 being marked, not yet sent
    second = asyncio.create_task(r.drain_once())
    # Rows 11-20 go out while 1-10 are still being marked: not 1-10 again.
    await asyncio.wait_for(publisher.reached(20), 5)
    assert outbox.sent == [] and not second.done()  # it waits for the mark before its own
    outbox.release.set()
    assert await asyncio.wait_for(second, 5) == 10
    assert await asyncio.wait_for(r.drain_once(), 5) == 5
    await asyncio.wait_for(r.flush(), 5)
    assert outbox.sent == list(range(1, 26))
    assert publisher.keys == [str(i).encode() for i in range(1, 26)]  # each once, in id order
    assert outbox.left == []


async def test_a_failed_mark_surfaces_at_the_next_batch_and_its_rows_are_published_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox, publisher = SlowOutbox(15), Publisher()
    outbox.fail_next_mark = True
    r = relay(outbox, monkeypatch, None, publisher)

    assert await r.drain_once() == 10
    outbox.release.set()
    # The next batch (11-15) is published, then the first mark's failure is raised: the
    # relay steps down, and the next term reads 1-10 again (duplicates, never a loss).
    with pytest.raises(ConnectionResetError):
        await r.drain_once()
    await r.flush()  # nothing in flight: the failure ended that batch before its mark began
    assert await drained(r) == 10
    assert sorted(outbox.sent) == list(range(1, 11))
    assert await drained(r) == 5  # never marked either: published once more
    assert sorted(outbox.sent) == list(range(1, 16)) and outbox.left == []
