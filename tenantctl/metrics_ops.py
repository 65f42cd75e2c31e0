"""tenantctl's metrics views: one tenant's latest snapshot, and the top tenants."""

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from adapters.kafka.event_reader import EventReader
from adapters.redis_usage import RedisTenantUsage
from contracts import codec
from contracts.envelope import Envelope
from contracts.events import MetricsDue, TenantMetricsCollected
from domain.errors import TransientError
from domain.schedules import Every, next_window
from runtime.settings import Settings
from tenantctl.ops import CLI_SOURCE, publish_event

TOP_COLUMNS = {"size": "size_bytes", "connections": "connections", "dead_tuples": "dead_tuples"}


async def latest_snapshot(settings: Settings, tenant_id: str) -> tuple[str, dict[str, Any] | None]:
    """(where it came from, snapshot): Redis first, else the newest row of the history."""
    client = aioredis.from_url(settings.redis_url.get_secret_value())
    usage = RedisTenantUsage(
        client, scan_count=1, max_keys=1, sample_keys=1, prefix=settings.names.redis_prefix
    )
    try:
        snapshot = await usage.snapshot(tenant_id)
        if snapshot is not None:
            return "redis", _with_datetimes(snapshot)
    except TransientError:
        pass  # Redis down: the history still answers
    finally:
        await client.aclose()
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        return "postgres", await settings.names.tenant_metrics().latest(
            conn, tenant_id
        )
    finally:
        await conn.close()


_TIME_KEYS = ("window_start", "collected_at", "last_vacuum", "last_analyze")


def _with_datetimes(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Redis holds times as text in two spellings (isoformat and str()); the history holds
    datetimes. Parsed here, both print alike (RFC 3339)."""
    fixed = dict(snapshot)
    for key in _TIME_KEYS:
        if isinstance(fixed.get(key), str):
            with contextlib.suppress(ValueError):
                fixed[key] = datetime.fromisoformat(fixed[key])
    return fixed


async def top_tenants(settings: Settings, by: str, limit: int) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        return await settings.names.tenant_metrics().top(
            conn, TOP_COLUMNS[by], limit
        )
    finally:
        await conn.close()


def next_tick(settings: Settings, now: datetime | None = None) -> datetime:
    """When the scheduler's next MetricsDue window starts (windows are aligned to the epoch)."""
    due = next_window(Every(settings.metrics_interval), now or datetime.now(UTC))
    assert due is not None  # an interval always has a next window
    return due


async def collect(settings: Settings, tenant_id: str, timeout: float) -> Envelope | None:
    """Publish a MetricsDue for this moment (a tick: every tenant is collected, in one
    statement) and wait for this tenant's TenantMetricsCollected; None after ``timeout``."""
    window = datetime.now(UTC).replace(microsecond=0)
    envelope = codec.envelope_for(
        MetricsDue(window_start=window, interval_seconds=settings.metrics_interval),
        source=CLI_SOURCE,
    )
    async with EventReader(settings.kafka) as reader:
        await publish_event(settings, envelope)

        async def mine() -> Envelope:
            async for env in reader:
                if env.causationid == envelope.id and env.subject == tenant_id:
                    if env.type == TenantMetricsCollected.__name__:
                        return env
            raise AssertionError("event stream ended")

        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(mine(), timeout)
    return None
