"""OutboxRelay on fakes: the backlog is counted when a batch catches up, and at most every
BACKLOG_EVERY_S while the relay is busy (counting scans every unsent row); a batch is marked
sent in the background while the next ones are read and published (all that waited marked by
one UPDATE), never publishing a row twice nor out of order; a failed mark is raised and its rows
published again."""

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
    """Its marks wait for ``release``; ``marking`` is set while one waits; ``marks`` holds the
    ids of each UPDATE."""

    def __init__(self, rows: int) -> None:
        super().__init__(rows)
        self.release, self.marking = asyncio.Event(), asyncio.Event()
        self.fail_next_mark = False
        self.marks: list[list[int]] = []

    async def mark_sent(self, conn: Any, ids: list[int]) -> None:
        self.marking.set()
        await self.release.wait()
        self.marking.clear()
        if self.fail_next_mark:
            self.fail_next_mark = False
            raise ConnectionResetError("mark cut short")
        self.marks.append(list(ids))
        await super().mark_sent(conn, ids)


async def test_batches_are_published_while_a_mark_runs_and_marked_together_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox, publisher = SlowOutbox(35), Publisher()
    r = relay(outbox, monkeypatch, None, publisher)

    assert await r.drain_once() == 10
    await asyncio.wait_for(outbox.marking.wait(), 5)  # rows 1-10 being marked, not yet sent
    # Rows 11-20 and 21-30 go out while 1-10 are still being marked, without waiting for it,
    # and never 1-10 again.
    assert await asyncio.wait_for(r.drain_once(), 5) == 10
    assert await asyncio.wait_for(r.drain_once(), 5) == 10
    assert outbox.sent == []
    outbox.release.set()
    assert await asyncio.wait_for(r.drain_once(), 5) == 5
    await asyncio.wait_for(r.flush(), 5)
    assert outbox.sent == list(range(1, 36)) and outbox.left == []
    assert publisher.keys == [str(i).encode() for i in range(1, 36)]  # each once, in id order
    # What waited for the first UPDATE was marked by one more, not one per batch.
    assert outbox.marks[:2] == [list(range(1, 11)), list(range(11, 31))]


async def test_the_relay_waits_for_its_marks_when_too_many_batches_wait_for_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox, publisher = SlowOutbox(60), Publisher()
    r = relay(outbox, monkeypatch, None, publisher)
    for _ in range(outbox_relay.UNMARKED_BATCHES - 1):
        assert await asyncio.wait_for(r.drain_once(), 5) == 10
    await asyncio.wait_for(outbox.marking.wait(), 5)
    last = asyncio.create_task(r.drain_once())  # the fourth batch unmarked: it waits
    await asyncio.wait_for(publisher.reached(10 * outbox_relay.UNMARKED_BATCHES), 5)
    for _ in range(50):  # on fakes, a drain that did not wait would end within a few of these
        await asyncio.sleep(0)
    assert not last.done() and outbox.sent == []
    outbox.release.set()
    assert await asyncio.wait_for(last, 5) == 10
    assert outbox.sent == list(range(1, 10 * outbox_relay.UNMARKED_BATCHES + 1))


async def test_a_failed_mark_surfaces_at_the_next_batch_and_its_rows_are_published_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox, publisher = SlowOutbox(25), Publisher()
    outbox.fail_next_mark = True
    r = relay(outbox, monkeypatch, None, publisher)

    assert await asyncio.wait_for(r.drain_once(), 5) == 10
    assert await asyncio.wait_for(r.drain_once(), 5) == 10  # published while 1-10 are marked
    outbox.release.set()
    marking = r._marking
    assert marking is not None
    await asyncio.wait_for(asyncio.wait([marking]), 5)  # the mark of 1-10 failed
    # The failure is raised before anything more is read: the relay steps down, and the next
    # term reads 1-10 and 11-20 again (duplicates, never a loss).
    with pytest.raises(ConnectionResetError):
        await r.drain_once()
    assert publisher.published == 20
    await r.flush()  # nothing left in flight
    assert await drained(r) == 10
    assert await drained(r) == 10
    assert await drained(r) == 5
    assert outbox.sent == list(range(1, 26)) and outbox.left == []
    assert publisher.keys == [str(i).encode() for i in [*range(1, 21), *range(1, 26)]]


async def test_a_failed_mark_surfaces_at_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = SlowOutbox(5)
    outbox.fail_next_mark = True
    outbox.release.set()
    r = relay(outbox, monkeypatch, None)
    assert await r.drain_once() == 5
    with pytest.raises(ConnectionResetError):
        await r.flush()
    assert await drained(r) == 5  # published again, then marked
    assert outbox.sent == list(range(1, 6))
