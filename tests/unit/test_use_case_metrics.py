"""MetricsCollection on fakes: one TenantMetricsCollected per tenant (+ quota results), the
same tick twice is a no-op, an unreachable cache rolls the tick back."""

from datetime import UTC, datetime

import pytest

from contracts.events import MetricsDue
from domain.errors import TransientError
from service.metrics_collection import MetricsCollection, Quotas
from tests.unit.fakes import FakeStores
from tests.unit.fakes.metrics import FakeTenantFigures, FakeTenantUsage, FakeUsage, figures_of
from tests.unit.use_case_support import decoded, transaction

WINDOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _collection(stores: FakeStores, usage: FakeTenantUsage) -> MetricsCollection:
    figures = FakeTenantFigures([figures_of("a"), figures_of("b", size=500)])
    return MetricsCollection(
        transaction(stores, "tenant-metrics"), figures, usage,
        Quotas(size_bytes={"basic": 300}, connections={}),
        snapshot_ttl_s=60, history_length=10, source="urn:tests",
    )


async def test_one_result_per_tenant_and_a_duplicate_tick_is_a_no_op() -> None:
    stores, usage = FakeStores(), FakeTenantUsage({"a": FakeUsage(10, 2)})
    collection = _collection(stores, usage)
    tick = decoded(MetricsDue(window_start=WINDOW, interval_seconds=60))
    staged = await collection.metrics_due(tick)
    assert staged is not None and staged.results == 3
    assert sorted((e.type, e.subject) for e in stores.results) == [
        ("TenantMetricsCollected", "a"), ("TenantMetricsCollected", "b"),
        ("TenantQuotaExceeded", "b")]
    assert stores.results[0].data["redis_keys"] == 2
    assert set(usage.snapshots) == {"a", "b"}
    assert await collection.metrics_due(tick) is None  # the same event id: the inbox has it
    again = await collection.metrics_due(decoded(MetricsDue(window_start=WINDOW, interval_seconds=60)))
    assert again is not None and again.results == 0  # the same window under another id
    assert len(stores.results) == 3


async def test_an_unreachable_cache_rolls_the_tick_back_inbox_row_included() -> None:
    stores = FakeStores()
    usage = FakeTenantUsage(fault=TransientError("redis down"))
    tick = decoded(MetricsDue(window_start=WINDOW, interval_seconds=60))
    with pytest.raises(TransientError):
        await _collection(stores, usage).metrics_due(tick)
    assert stores.results == [] and stores.state.inbox == set()
    usage.fault = None
    assert await _collection(stores, usage).metrics_due(tick) is not None
