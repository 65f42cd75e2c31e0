"""WarmPoolRefill on a fake pool: it steps aside while provisioners claim, not otherwise."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from producers import warm_pool_refill
from producers.warm_pool_refill import WarmPoolRefill
from runtime.settings import Settings


class Pool:
    """A pool of provisioners claiming between the refill's looks (``claims``, one per look)."""

    latest = 2

    def __init__(self, pooled: int, claims: list[int]) -> None:
        self.pooled, self.claims = pooled, claims
        self.log: list[str] = []

    async def counts(self, conn: Any) -> dict[int, int]:
        if self.claims:
            taken = self.claims.pop(0)
            self.pooled -= taken
            if taken:
                self.log.append(f"claimed {taken}")
        return {self.latest: self.pooled}

    async def add(self, conn: Any) -> str:
        self.pooled += 1
        self.log.append("create")
        return "p"

    async def discard(self, conn: Any, *, stale: bool) -> str | None:
        raise AssertionError("nothing to discard here")

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator["Pool"]:
        yield self

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


def refill(pool: Pool, monkeypatch: pytest.MonkeyPatch, connections: int = 1) -> WarmPoolRefill:
    monkeypatch.setattr(warm_pool_refill, "_YIELD_S", 0.0)
    settings = Settings(
        pg_dsn="postgresql://u:p@127.0.0.1:1/db",  # type: ignore[arg-type]
        warm_pool_size=10,
        warm_pool_refill_connections=connections,
    )
    return WarmPoolRefill(settings, pool, pool)  # type: ignore[arg-type]


async def test_claims_in_progress_are_not_competed_with_while_over_half_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = Pool(10, claims=[0, 3, 2, 0])
    r = refill(pool, monkeypatch)
    assert await r.refill_once() == {}  # full
    done = await r.refill_once()
    # Two looks saw claims (10 -> 7 -> 5): no schema made meanwhile; then they paused.
    assert pool.log == ["claimed 3", "claimed 2"] + ["create"] * 5
    assert done == {"create": 5} and pool.pooled == 10


async def test_below_half_the_refill_creates_even_while_claims_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = Pool(10, claims=[0, 6, 1, 1])
    r = refill(pool, monkeypatch)
    await r.refill_once()
    await r.refill_once()
    assert pool.log[:4] == ["claimed 6", "create", "claimed 1", "create"]
    assert pool.pooled == 10


async def test_the_refills_own_schemas_are_not_taken_for_claims(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = Pool(4, claims=[])
    r = refill(pool, monkeypatch)
    await r.refill_once()
    assert pool.log == ["create"] * 6  # never yielded: the pool only grew


class SlowPool(Pool):
    """Creations that take a while, so those made side by side overlap; counts what overlapped,
    and fails the ``fail_at``-th creation."""

    def __init__(self, pooled: int, fail_at: int = 0) -> None:
        super().__init__(pooled, claims=[])
        self.in_flight = self.most_in_flight = self.most_pooled = self.started = 0
        self.fail_at = fail_at

    async def add(self, conn: Any) -> str:
        self.started += 1
        if self.started == self.fail_at:
            raise RuntimeError("creation failed")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        name = await super().add(conn)
        self.most_pooled = max(self.most_pooled, self.pooled)
        return name


async def test_schemas_are_made_side_by_side_never_past_the_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = SlowPool(3)
    assert await refill(pool, monkeypatch, connections=3).refill_once() == {"create": 7}
    assert pool.most_in_flight == 3
    assert pool.pooled == pool.most_pooled == 10  # 3 + 3 + 3 + 1: never 12, then trimmed


async def test_below_half_while_claims_go_on_one_is_made_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = SlowPool(10)
    pool.claims = [0, 6, 1, 1, 0]  # claimed down to 4, then one at each of the next two looks
    r = refill(pool, monkeypatch, connections=3)
    await r.refill_once()
    await r.refill_once()
    # claims seen at three looks: one creation each; then they stop: side by side again.
    assert pool.log[:6] == ["claimed 6", "create", "claimed 1", "create", "claimed 1", "create"]
    assert pool.most_in_flight == 3 and pool.pooled == 10


async def test_one_connection_makes_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = SlowPool(7)
    assert await refill(pool, monkeypatch).refill_once() == {"create": 3}
    assert pool.most_in_flight == 1


async def test_a_failed_creation_lets_the_others_finish_then_goes_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = SlowPool(0, fail_at=2)
    r = refill(pool, monkeypatch, connections=3)
    with pytest.raises(RuntimeError, match="creation failed"):
        await r.refill_once()
    assert pool.pooled == 2 and pool.in_flight == 0  # the two others committed; none left running
    assert r.done == {"create": 2}


async def test_a_claim_during_a_creation_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 -> 6 (claimed 4: yield) -> 6 (claims paused: create) -> 7, but one is claimed while it
    # is made: the look sees 6 again, which is one fewer than there would be, so it yields.
    pool = Pool(10, claims=[0, 4, 0, 1, 0])
    r = refill(pool, monkeypatch)

    async def pause(seconds: float) -> None:
        pool.log.append("yield")

    monkeypatch.setattr(r, "pause", pause)
    await r.refill_once()
    await r.refill_once()
    assert pool.log[:5] == ["claimed 4", "yield", "create", "claimed 1", "yield"]
    assert pool.pooled == 10
