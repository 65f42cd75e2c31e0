"""Probes of what the service wrote, and the cleanup of test tenants.

The workers under test run in the session's namespace (tests/support/names.py).
"""

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from adapters.migration_files import load_migrations
from domain.migrations import plan_migrations
from domain.tenant_ids import quote_ident
from migrations import TENANT_DIR
from runtime.settings import Settings
from tests.support import names as ns


def template_version() -> int:
    """The version a new tenant schema is created at: the latest shipped template migration."""
    return plan_migrations(load_migrations(TENANT_DIR), current=0).target


async def schema_exists(conn: asyncpg.Connection, schema: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema))


async def inbox_count(conn: asyncpg.Connection, group: str, event_id: str) -> int:
    return int(
        await conn.fetchval(
            f"SELECT count(*) FROM {ns.CONTROL}.inbox WHERE consumer_group = $1 AND event_id = $2",
            group,
            event_id,
        )
    )


async def outbox_row(conn: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    """The outbox row of ``event_id`` with ``sent``: the relay has published it (its id is no
    longer pending)."""
    return await conn.fetchrow(
        f"SELECT o.*, NOT EXISTS (SELECT 1 FROM {ns.CONTROL}.outbox_pending p WHERE p.id = o.id)"
        f" AS sent FROM {ns.CONTROL}.outbox o WHERE o.event_id = $1",
        event_id,
    )


async def registry_row(conn: asyncpg.Connection, tenant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {ns.CONTROL}.tenants WHERE tenant_id = $1", tenant_id
    )


async def drop_tenants(conn: asyncpg.Connection, tenant_ids: list[str]) -> None:
    """Schema first (it holds every object the role has privileges on), then the role."""
    for tenant_id in tenant_ids:
        # not ns.tenant(): some tests track ids the service refused (invalid on purpose)
        name = quote_ident(ns.names().tenant_prefix + tenant_id)
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await conn.execute(f"DROP ROLE IF EXISTS {name}")
    if not await schema_exists(conn, ns.CONTROL):
        return  # no worker of the session ever ran
    for table in ("tenants", "inbox"):
        await conn.execute(
            f"DELETE FROM {ns.CONTROL}.{table} WHERE tenant_id = ANY($1::text[])",  # noqa: S608
            tenant_ids,
        )
    await conn.execute(
        f"DELETE FROM {ns.CONTROL}.outbox o WHERE key = ANY($1::bytea[])"
        f" AND NOT EXISTS (SELECT 1 FROM {ns.CONTROL}.outbox_pending p WHERE p.id = o.id)",
        [t.encode() for t in tenant_ids],
    )


async def drop_namespace(conn: asyncpg.Connection, settings: Settings) -> None:
    """At the end of a session: whatever is left of its namespace (tenants made by fixtures that
    bypass the registry, the control schema, the topics). Never another deployment's."""
    names = settings.names
    assert names.namespace, "refusing to drop the un-namespaced deployment's objects"
    like = names.tenant_prefix.replace("_", "\\_") + "%"
    for (schema,) in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", like):
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(names.control_schema)} CASCADE")
    roles = [r for (r,) in await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", like)]
    # The restore role (<ns>_tenant_service_restore, also matched above) and the API's read role
    # hold privileges on the database itself: DROP OWNED (for roles whose privileges the service has,
    # as it is of those; it is not of tenant roles, which own nothing left) takes those too.
    for role in {*roles, names.restore_role, names.api_reader_role, names.app_role}:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            continue
        if await conn.fetchval("SELECT pg_has_role(current_user, $1, 'USAGE')", role):
            await conn.execute(f"DROP OWNED BY {quote_ident(role)}")
        await conn.execute(f"DROP ROLE {quote_ident(role)}")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [t for t in names.topics.all if t in existing]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
