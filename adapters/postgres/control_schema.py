"""Creates and migrates the service's control schema, the shared app role and extensions.

Runs at every start-up under an advisory lock, so replicas starting together do it once.
"""

import asyncpg

from adapters.migration_files import load_migrations, required_extensions
from adapters.postgres.errors import translated
from domain.postgres_version import require_supported
from domain.tenant_ids import quote_ident
from migrations import CONTROL_DIR, TENANT_DIR

EXTENSIONS_SCHEMA = "extensions"
_SHARED_CATALOG_LOCK = 7_311_000


async def lock_shared_catalog(conn: asyncpg.Connection) -> None:
    """Until the caller's transaction ends: every set-up that changes shared catalog rows (the
    grants on the control schema, the service's roles) takes this one lock. PostgreSQL does not
    queue two concurrent updates of one catalog row; the later fails ("tuple concurrently
    updated") once the earlier commits, so set-ups under locks of their own would fail each
    other when replicas start while a restorer sets up."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _SHARED_CATALOG_LOCK)


async def ensure_control_schema(
    conn: asyncpg.Connection, control_schema: str, app_role: str, *, api_reader_role: str
) -> None:
    """Create or migrate the control schema; create the app role and the API's read role
    (both named by the deployment's namespace, runtime.names) and the shared extensions."""
    await check_server_version(conn)
    schema = quote_ident(control_schema)
    with translated("control schema bootstrap"):
        async with conn.transaction():
            await lock_shared_catalog(conn)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await migrate_control_schema(conn, control_schema)
            await _ensure_app_role(conn, app_role)
            await _ensure_api_reader_role(conn, control_schema, api_reader_role)
            await ensure_extensions(conn)


async def migrate_control_schema(
    conn: asyncpg.Connection, control_schema: str, *, before: int | None = None
) -> None:
    """In the caller's transaction, apply the control migrations ``control_schema`` has not
    recorded (only those numbered below ``before``, when given: a test's older release)."""
    schema = quote_ident(control_schema)
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {schema}.control_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied = {
        r["version"] for r in await conn.fetch(f"SELECT version FROM {schema}.control_migrations")
    }
    for migration in load_migrations(CONTROL_DIR):
        if migration.version in applied or (before is not None and migration.version >= before):
            continue
        await conn.execute(f"SET LOCAL search_path TO {schema}")
        await conn.execute(migration.sql)
        await conn.execute(
            f"INSERT INTO {schema}.control_migrations (version, name) VALUES ($1, $2)",
            migration.version,
            migration.name,
        )


async def check_server_version(conn: asyncpg.Connection) -> int:
    """The server's ``server_version_num``; ``PermanentError`` naming it if below 15."""
    with translated("server version check"):
        row = await conn.fetchrow(
            "SELECT current_setting('server_version_num')::int AS num,"
            " current_setting('server_version') AS version"
        )
    assert row is not None
    require_supported(row["num"], row["version"])
    return int(row["num"])


async def _ensure_app_role(conn: asyncpg.Connection, app_role: str) -> None:
    # NOINHERIT: tenant_app holds every tenant role but gets a tenant's privileges only after
    # SET ROLE tenant_<id>, so a connection that forgot to pick a tenant sees nothing.
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", app_role)
    verb = "ALTER" if exists else "CREATE"
    await conn.execute(f"{verb} ROLE {quote_ident(app_role)} LOGIN NOINHERIT")
    # Membership lets the service end the app role's sessions of a suspended tenant
    # (pg_terminate_backend needs it) and SET ROLE to it in checks. The service role gains no
    # tenant privileges through it: the app role inherits nothing.
    member = await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", app_role)
    if not member:
        await conn.execute(f"GRANT {quote_ident(app_role)} TO CURRENT_USER")


# What the HTTP API shows, and nothing else (not the keys, the inbox, the parked events).
API_READABLE_TABLES = (
    "tenants",
    "backups",
    "tenant_metrics",
    "outbox",
    "api_operations",
    "backup_jobs",
    "migration_rollouts",
)


async def _ensure_api_reader_role(
    conn: asyncpg.Connection, control_schema: str, api_reader_role: str
) -> None:
    # It cannot log in: the API's read pool switches to it (role startup parameter), read-only
    # by default. Membership lets the service's own login do that switch.
    role, schema = quote_ident(api_reader_role), quote_ident(control_schema)
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", api_reader_role):
        await conn.execute(f"CREATE ROLE {role} NOLOGIN")
    await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    tables = ", ".join(f"{schema}.{quote_ident(t)}" for t in API_READABLE_TABLES)
    await conn.execute(f"GRANT SELECT ON {tables} TO {role}")
    if not await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", api_reader_role):
        await conn.execute(f"GRANT {role} TO CURRENT_USER")


async def ensure_extensions(conn: asyncpg.Connection) -> None:
    # Extensions are database-wide; creating them per tenant would race between provisioners.
    ext_schema = quote_ident(EXTENSIONS_SCHEMA)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ext_schema}")
    await conn.execute(f"GRANT USAGE ON SCHEMA {ext_schema} TO PUBLIC")
    for name in required_extensions(load_migrations(TENANT_DIR)):
        await conn.execute(
            f"CREATE EXTENSION IF NOT EXISTS {quote_ident(name)} SCHEMA {ext_schema}"
        )
