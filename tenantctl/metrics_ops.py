"""tenantctl's metrics views: one tenant's latest snapshot, and the top tenants."""

from typing import Any

import asyncpg
import redis.asyncio as aioredis

from adapters.postgres.tenant_metrics import PostgresTenantMetrics
from adapters.redis_usage import RedisTenantUsage
from domain.errors import TransientError
from runtime.settings import Settings

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
            return "redis", snapshot
    except TransientError:
        pass  # Redis down: the history still answers
    finally:
        await client.aclose()
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        return "postgres", await PostgresTenantMetrics(settings.names.control_schema).latest(
            conn, tenant_id
        )
    finally:
        await conn.close()


async def top_tenants(settings: Settings, by: str, limit: int) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        return await PostgresTenantMetrics(settings.names.control_schema).top(
            conn, TOP_COLUMNS[by], limit
        )
    finally:
        await conn.close()
