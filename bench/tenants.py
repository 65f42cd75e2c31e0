"""Tenants made directly through PostgresTenantStore: the provisioning floor, and fixtures."""

import asyncio
from collections.abc import Sequence

import asyncpg

from adapters.migration_files import load_migrations
from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.tenant_store import PostgresTenantStore
from domain.migrations import Migration, plan_migrations
from migrations import TENANT_DIR
from runtime.settings import Settings


def store(settings: Settings) -> PostgresTenantStore:
    return settings.names.tenant_store()


def latest_steps() -> list[Migration]:
    return list(plan_migrations(load_migrations(TENANT_DIR), current=0).steps)


async def ensure_control(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        n = settings.names
        await ensure_control_schema(
            conn, n.control_schema, n.app_role, api_reader_role=n.api_reader_role
        )
    finally:
        await conn.close()


async def create_sequential(conn: asyncpg.Connection, settings: Settings, ids: Sequence[str],
                            steps: list[Migration], plan: str = "free") -> None:
    """The floor: the provisioner's exact DDL, one transaction per tenant, nothing else."""
    s = store(settings)
    for tid in ids:
        async with conn.transaction():
            await s.create(conn, tid, plan, steps)


async def create_parallel(settings: Settings, ids: Sequence[str], steps: list[Migration],
                          connections: int = 3) -> None:
    """Fixture set-up (not timed): the same DDL over a few connections."""
    dsn = settings.pg_dsn.get_secret_value()

    async def part(chunk: Sequence[str]) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await create_sequential(conn, settings, chunk, steps)
        finally:
            await conn.close()

    await asyncio.gather(*(part(ids[i::connections]) for i in range(connections)))
