"""A tenant schema of about S MB (users, projects, documents of random text): the backup fixture."""

import asyncpg

from bench import common, tenants
from domain.tenant_ids import quote_ident
from runtime.settings import Settings

ROW_BYTES = 1100  # a document row with its ~1 KB body and its share of the indexes, on disk


async def schema_mb(conn: asyncpg.Connection, schema: str) -> float:
    return float(await conn.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
        schema)) / 1e6


async def make(settings: Settings, megabytes: int) -> tuple[str, float]:
    """(tenant id, schema MB). Bodies are random hex: compressible about 2:1, like real text."""
    (tid,) = common.tenant_ids(1, "d")
    conn = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        await tenants.create_sequential(conn, settings, [tid], tenants.latest_steps())
        s = quote_ident(common.schema(tid))
        users = max(10, megabytes * 20)
        await conn.execute(
            f"INSERT INTO {s}.users (email, display_name) SELECT 'user' || g || '@example.com',"
            f" 'User ' || g FROM generate_series(1, {users}) g")
        await conn.execute(
            f"INSERT INTO {s}.projects (owner_id, name) SELECT id, 'project of ' || email"
            f" FROM {s}.users")
        docs = megabytes * 1_000_000 // ROW_BYTES
        batch = 50_000
        for first in range(0, docs, batch):  # batches keep each statement's WAL burst modest
            n = min(batch, docs - first)
            await conn.execute(
                f"INSERT INTO {s}.documents (project_id, title, body, tags)"
                f" SELECT p.id, 'doc ' || g, b.body, ARRAY['t' || (g % 50), 'x' || (g % 7)]"
                f" FROM generate_series(1, {n}) g"
                f" JOIN {s}.projects p ON p.id = 1 + (g % {users})"
                f" CROSS JOIN LATERAL (SELECT string_agg(md5(random()::text || g || k), '') AS body"
                f"  FROM generate_series(1, 28) k WHERE k > 0 * g) b")
        await conn.execute(f"VACUUM (ANALYZE) {s}.documents")
        return tid, await schema_mb(conn, common.schema(tid))
    finally:
        await conn.close()
