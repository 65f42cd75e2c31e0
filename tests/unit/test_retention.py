"""Retention of bookkeeping rows: which tables, which ages, bounded batches; no stack."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from adapters.postgres.retention import PostgresRetention
from producers.retention import Retention, retention_ages
from runtime.roles import relay_role
from runtime.settings import Settings, load_settings
from tests.support.resources import unconnected_resources

DSN = "postgresql://svc:secret@127.0.0.1:5432/tenants"
DAY = 86_400.0


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("TENANT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TENANT_PG_DSN", DSN)


class FakeRetentionStore:
    """Holds ``rows`` prunable rows per table and deletes them ``batch`` at a time."""

    def __init__(self, rows: dict[str, int]) -> None:
        self.rows = dict(rows)
        self.calls: list[tuple[str, float, int]] = []

    async def prune_batch(self, conn: Any, table: str, older_than_s: float, batch: int) -> int:
        self.calls.append((table, older_than_s, batch))
        n = min(batch, self.rows.get(table, 0))
        self.rows[table] = self.rows.get(table, 0) - n
        return n


class FakePool:
    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[None]:
        yield None


def test_inbox_retention_defaults_to_the_redelivery_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_EVENT_MAX_AGE_S", str(7 * DAY))
    monkeypatch.setenv("TENANT_EVENT_MAX_FUTURE_S", "300")
    assert retention_ages(load_settings())["inbox"] == 7 * DAY + 300


def test_inbox_retention_below_the_redelivery_window_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENANT_EVENT_MAX_AGE_S", str(7 * DAY))
    monkeypatch.setenv("TENANT_INBOX_RETENTION_S", str(DAY))
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert "TENANT_INBOX_RETENTION_S" in str(exc.value)
    assert "TENANT_EVENT_MAX_AGE_S" in str(exc.value)


def test_zero_keeps_a_table_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_OUTBOX_RETENTION_S", "0")
    monkeypatch.setenv("TENANT_INBOX_RETENTION_S", "0")
    ages = retention_ages(load_settings())
    assert "outbox" not in ages and "inbox" not in ages
    assert set(ages) == {
        "backup_jobs",
        "restore_drills",
        "scheduler_state",
        "api_idempotency_keys",
        "api_operations",
    }


def test_idempotency_keys_are_pruned_only_past_their_expiry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The key table's age is measured from expires_at, which already holds the >= 24 h TTL.
    ages = retention_ages(load_settings())
    assert 0 < ages["api_idempotency_keys"] <= 60
    assert ages["api_operations"] == 7 * DAY


async def test_each_table_is_pruned_in_bounded_batches_with_its_own_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENANT_RETENTION_BATCH_SIZE", "100")
    monkeypatch.setenv("TENANT_OUTBOX_RETENTION_S", "3600")
    monkeypatch.setenv("TENANT_JOBS_RETENTION_S", str(2 * DAY))
    settings = load_settings()
    store = FakeRetentionStore({"outbox": 250, "backup_jobs": 100, "inbox": 0})
    retention = Retention(settings, FakePool(), store)  # type: ignore[arg-type]

    deleted = await retention.prune_once()

    assert deleted["outbox"] == 250 and deleted["backup_jobs"] == 100
    assert store.rows["outbox"] == 0
    outbox_calls = [c for c in store.calls if c[0] == "outbox"]
    assert outbox_calls == [("outbox", 3600, 100)] * 3  # 100 + 100 + 50: the short batch ends it
    assert [c for c in store.calls if c[0] == "backup_jobs"] == [("backup_jobs", 2 * DAY, 100)] * 2
    assert all(batch == 100 for _, _, batch in store.calls)


async def test_a_stop_is_honoured_between_batches() -> None:
    settings: Settings = load_settings()
    store = FakeRetentionStore({"inbox": 10**9})
    retention = Retention(settings, FakePool(), store)  # type: ignore[arg-type]
    original = store.prune_batch

    async def stop_after_two(conn: Any, table: str, older: float, batch: int) -> int:
        if len(store.calls) == 1:
            retention.stop()
        return await original(conn, table, older, batch)

    store.prune_batch = stop_after_two  # type: ignore[method-assign]
    await retention.prune_once()
    assert len(store.calls) == 2


async def test_the_relay_role_prunes_this_deployments_control_schema() -> None:
    # The composition root builds the store: the producer imports no adapter.
    s = load_settings()
    parts = await relay_role(unconnected_resources(s))
    (retention,) = [b for b in parts.background if isinstance(b, Retention)]
    store = retention._store
    assert isinstance(store, PostgresRetention)
    assert store._sql == PostgresRetention(s.names.control_schema)._sql
