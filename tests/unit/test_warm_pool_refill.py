"""WarmPoolRefill on a fake pool: it steps aside while provisioners claim, not otherwise."""

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


def refill(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> WarmPoolRefill:
    monkeypatch.setattr(warm_pool_refill, "_YIELD_S", 0.0)
    settings = Settings(pg_dsn="postgresql://u:p@127.0.0.1:1/db", warm_pool_size=10)  # type: ignore[arg-type]
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
