"""The asyncpg pool, with timeouts that keep one slow statement from holding a tenant's lock."""

import asyncpg

from runtime.settings import Settings


async def create_pool(settings: Settings, *, max_size: int | None = None) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.pg_dsn.get_secret_value(),
        min_size=min(settings.pg_pool_min, max_size or settings.pg_pool_max),
        max_size=max_size or settings.pg_pool_max,
        command_timeout=settings.pg_statement_timeout_ms / 1000 + 5,
        server_settings={
            "application_name": "tenant-service",
            "statement_timeout": str(settings.pg_statement_timeout_ms),
            "lock_timeout": str(settings.pg_lock_timeout_ms),
        },
    )
    assert pool is not None
    return pool
