"""The warm pool's pure rules (names, refill decisions), its refill loop and the provisioning
hook, with fakes; no stack."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from domain import namespaces
from domain.tenant_ids import (
    PG_MAX_IDENTIFIER_BYTES,
    TENANT_ID_MAX_LENGTH,
    InvalidTenantId,
    schema_name,
    validate_tenant_id,
)
from domain.warm_pool import (
    RefillAction,
    claimable,
    creations_at_once,
    is_pooled_name,
    next_refill,
    pooled_name,
)
from producers.warm_pool_refill import WarmPoolRefill
from runtime.settings import load_settings

DSN = "postgresql://svc:secret@127.0.0.1:5432/tenants"
TOKEN = "0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("TENANT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TENANT_PG_DSN", DSN)


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["", "ns1", "a" * namespaces.NAMESPACE_MAX_LENGTH])
def test_a_pooled_name_is_never_a_tenants_schema(namespace: str) -> None:
    prefix = namespaces.tenant_prefix(namespace)
    name = pooled_name(prefix, TOKEN)
    assert name.startswith(prefix) and is_pooled_name(prefix, name)
    assert len(name.encode()) <= PG_MAX_IDENTIFIER_BYTES
    # What would have to be the tenant id is not one: no request can name this schema.
    with pytest.raises(InvalidTenantId):
        validate_tenant_id(name[len(prefix) :])
    for tenant_id in ("pool_" + TOKEN, "abc", "x" * TENANT_ID_MAX_LENGTH):
        assert not is_pooled_name(prefix, schema_name(tenant_id, prefix))


def test_pooled_names_belong_to_their_deployment_only() -> None:
    mine, theirs = namespaces.tenant_prefix("ns1"), namespaces.tenant_prefix("ns2")
    assert not is_pooled_name(theirs, pooled_name(mine, TOKEN))
    assert not is_pooled_name(namespaces.tenant_prefix(""), pooled_name(mine, TOKEN))


@pytest.mark.parametrize("token", ["", "0123", "0123456789ABCDEF", "0123456789abcdeg", TOKEN + "0"])
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(ValueError):
        pooled_name("tenant_", token)
    assert not is_pooled_name("tenant_", "tenant__pool_" + token)


# --- refill decisions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "size", "action"),
    [
        ({}, 0, RefillAction.NONE),
        ({}, 3, RefillAction.CREATE),
        ({2: 2}, 3, RefillAction.CREATE),
        ({2: 3}, 3, RefillAction.NONE),
        ({2: 4}, 3, RefillAction.DISCARD_EXCESS),
        ({2: 3, 1: 2}, 3, RefillAction.DISCARD_STALE),
        ({2: 1, 1: 2}, 3, RefillAction.CREATE),  # replacements first: stale ones still serve
        ({1: 5}, 0, RefillAction.DISCARD_STALE),  # the pool turned off: emptied
        ({2: 3, 3: 7}, 3, RefillAction.NONE),  # a newer release's schemas are not ours to drop
        ({2: 0, 1: 0}, 0, RefillAction.NONE),
    ],
)
def test_next_refill(versions: dict[int, int], size: int, action: RefillAction) -> None:
    assert next_refill(versions, latest=2, size=size) == action


@pytest.mark.parametrize(
    ("latest_count", "action"),
    [
        (9, RefillAction.YIELD),
        (6, RefillAction.YIELD),
        (5, RefillAction.CREATE),
        (0, RefillAction.CREATE),
    ],
)
def test_while_provisioners_claim_the_refill_yields_until_half_is_gone(
    latest_count: int, action: RefillAction
) -> None:
    assert next_refill({2: latest_count}, latest=2, size=10, claiming=True) == action
    assert next_refill({2: latest_count}, latest=2, size=10) == RefillAction.CREATE


@pytest.mark.parametrize(
    ("versions", "connections", "n"),
    [
        ({}, 2, 2),  # empty: one per connection
        ({2: 9}, 3, 1),  # one missing: never more, whatever the connections
        ({2: 8, 1: 5}, 4, 2),  # stale ones do not count toward the size
        ({2: 10}, 2, 0),
        ({2: 12}, 2, 0),
        ({2: 0}, 1, 1),
    ],
)
def test_creations_at_once_never_overfill_the_pool(
    versions: dict[int, int], connections: int, n: int
) -> None:
    assert (
        creations_at_once(versions, latest=2, size=10, connections=connections, claiming=False) == n
    )
    # While provisioners claim: one at a time, and still never past the size.
    assert creations_at_once(
        versions, latest=2, size=10, connections=connections, claiming=True
    ) == min(n, 1)


def test_creations_at_once_need_a_connection() -> None:
    with pytest.raises(ValueError, match="connections"):
        creations_at_once({}, latest=2, size=10, connections=0, claiming=False)


def test_the_refill_must_leave_the_provisioners_a_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().warm_pool_refill_connections == 2
    monkeypatch.setenv("TENANT_WARM_POOL_SIZE", "10")
    monkeypatch.setenv("TENANT_PG_POOL_MAX", "4")
    monkeypatch.setenv("TENANT_WARM_POOL_REFILL_CONNECTIONS", "3")
    assert load_settings().warm_pool_refill_connections == 3
    monkeypatch.setenv("TENANT_WARM_POOL_REFILL_CONNECTIONS", "4")
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert "warm_pool_refill_connections" in str(exc.value)
    monkeypatch.setenv("TENANT_WARM_POOL_SIZE", "0")  # the pool off: no refill to hold them
    assert load_settings().warm_pool_refill_connections == 4


def test_a_release_claims_only_schemas_it_can_bring_to_its_latest() -> None:
    assert claimable(1, 2) and claimable(2, 2)
    assert not claimable(3, 2)


# --- the refill loop -------------------------------------------------------------------------


class FakeConn:
    def __init__(self) -> None:
        self.transactions = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.transactions += 1
        yield


class FakePool:
    def __init__(self) -> None:
        self.conn = FakeConn()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConn]:
        yield self.conn


class FakeWarmPoolStore:
    """Pooled schemas as a list of versions; ``held`` of them are being claimed (locked)."""

    def __init__(self, latest: int, versions: list[int], held: int = 0) -> None:
        self.latest, self.versions, self.held = latest, list(versions), held
        self.actions: list[str] = []

    async def counts(self, conn: Any) -> dict[int, int]:
        out: dict[int, int] = {}
        for v in self.versions:
            out[v] = out.get(v, 0) + 1
        return out

    async def add(self, conn: Any) -> str:
        self.versions.append(self.latest)
        self.actions.append("add")
        return "x"

    async def discard(self, conn: Any, *, stale: bool) -> str | None:
        free = [
            i
            for i, v in enumerate(self.versions[self.held :], self.held)
            if (v < self.latest if stale else v == self.latest)
        ]
        if not free:
            return None
        del self.versions[free[0]]
        self.actions.append("discard_stale" if stale else "discard_excess")
        return "x"


def _refill(
    monkeypatch: pytest.MonkeyPatch, store: FakeWarmPoolStore, size: int
) -> tuple[WarmPoolRefill, FakePool]:
    monkeypatch.setenv("TENANT_WARM_POOL_SIZE", str(size))
    pool = FakePool()
    return WarmPoolRefill(load_settings(), pool, store), pool  # type: ignore[arg-type]


async def test_refill_fills_to_the_size_one_schema_per_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = FakeWarmPoolStore(latest=2, versions=[2])
    refill, pool = _refill(monkeypatch, store, 4)
    assert await refill.refill_once() == {"create": 3}
    assert store.versions == [2, 2, 2, 2]
    assert pool.conn.transactions == 3
    assert await refill.refill_once() == {}  # full: nothing to do


async def test_refill_replaces_stale_schemas_then_drops_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = FakeWarmPoolStore(latest=3, versions=[2, 2, 3])
    refill, _ = _refill(monkeypatch, store, 2)
    assert await refill.refill_once() == {"create": 1, "discard_stale": 2}
    assert store.actions == ["add", "discard_stale", "discard_stale"]
    assert store.versions == [3, 3]


async def test_refill_leaves_rows_being_claimed_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeWarmPoolStore(latest=2, versions=[1, 2], held=1)  # the stale one is held
    refill, _ = _refill(monkeypatch, store, 1)
    assert await refill.refill_once() == {}
    assert store.versions == [1, 2]


async def test_refill_shrinks_an_oversized_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeWarmPoolStore(latest=2, versions=[2, 2, 2])
    refill, _ = _refill(monkeypatch, store, 1)
    assert await refill.refill_once() == {"discard_excess": 2}


async def test_a_stopped_refill_does_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeWarmPoolStore(latest=2, versions=[])
    refill, _ = _refill(monkeypatch, store, 5)
    refill.stop()
    assert await refill.refill_once() == {}


def test_the_pool_is_off_unless_sized(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().warm_pool_size == 0
    monkeypatch.setenv("TENANT_WARM_POOL_SIZE", "-1")
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert "TENANT_WARM_POOL_SIZE" in str(exc.value)
