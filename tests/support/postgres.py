"""Probes of what the service wrote, and the cleanup of test tenants.

The workers under test use the default control schema, ``tenant_service``.
"""

import asyncpg

from adapters.migration_files import load_migrations
from domain.migrations import plan_migrations
from domain.tenant_ids import quote_ident
from migrations import TENANT_DIR


def template_version() -> int:
    """The version a new tenant schema is created at: the latest shipped template migration."""
    return plan_migrations(load_migrations(TENANT_DIR), current=0).target


async def schema_exists(conn: asyncpg.Connection, schema: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema))


async def inbox_count(conn: asyncpg.Connection, group: str, event_id: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM tenant_service.inbox WHERE consumer_group = $1 AND event_id = $2",
            group,
            event_id,
        )
    )


async def outbox_row(conn: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM tenant_service.outbox WHERE event_id = $1", event_id)


async def registry_row(conn: asyncpg.Connection, tenant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM tenant_service.tenants WHERE tenant_id = $1", tenant_id
    )


async def drop_tenants(conn: asyncpg.Connection, tenant_ids: list[str]) -> None:
    """Schema first (it holds every object the role has privileges on), then the role."""
    for tenant_id in tenant_ids:
        name = quote_ident(f"tenant_{tenant_id}")
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await conn.execute(f"DROP ROLE IF EXISTS {name}")
    for table in ("tenants", "inbox"):
        await conn.execute(
            f"DELETE FROM tenant_service.{table} WHERE tenant_id = ANY($1::text[])",  # noqa: S608
            tenant_ids,
        )
    await conn.execute(
        "DELETE FROM tenant_service.outbox WHERE sent_at IS NOT NULL AND key = ANY($1::bytea[])",
        [t.encode() for t in tenant_ids],
    )
