"""PostgresWarmPool: tenant schemas made ahead of requests, and their claim by a provisioner.

A pooled schema is everything ``PostgresTenantStore.create`` makes except what names a tenant:
the NOLOGIN role, the schema at the latest template version, its grants, default privileges and
row-level security, under a neutral name (domain.warm_pool). The pool table lists them.

A claim, in the provisioning transaction: take one row (``FOR UPDATE SKIP LOCKED``, so two
provisioners never take the same), rename the schema and the role to the tenant's, point the
isolation policies at the new role name, grant the role to the app role and write the registry
row, as a creation would. Grants, default privileges and ownership hold the role's oid and follow
the rename; the policies' predicate names the role as text, so it is rewritten. A rollback (a
crash before commit included) undoes every step: the row, the schema and the role are back in
the pool, under their pooled name.
"""

# Table names are quote_ident()-ed from settings, never from input; values are bind parameters.
# ruff: noqa: S608

import secrets

import asyncpg
import structlog

from adapters.postgres.errors import translated
from adapters.postgres.large_objects import refuse_large_objects
from adapters.postgres.tenant_store import (
    POLICY_NAME,
    PostgresTenantStore,
    TenantRecord,
    isolation_predicate,
)
from domain.errors import PermanentError
from domain.migrations import Migration, plan_migrations
from domain.tenant_ids import quote_ident, quote_literal
from domain.warm_pool import TOKEN_BYTES, is_pooled_name, pooled_name

log = structlog.get_logger(__name__)


class PostgresWarmPool:
    """The pool of one deployment (its control schema and tenant prefix), for one template."""

    def __init__(
        self, control_schema: str, store: PostgresTenantStore, template: list[Migration]
    ) -> None:
        self._table = f"{quote_ident(control_schema)}.warm_pool"
        self._store = store
        self._template = template
        plan = plan_migrations(template, current=0)
        self._steps = list(plan.steps)
        self.latest = plan.target

    async def counts(self, conn: asyncpg.Connection) -> dict[int, int]:
        """Pooled schemas per template version."""
        with translated("warm pool counts"):
            rows = await conn.fetch(
                f"SELECT schema_version, count(*) AS n FROM {self._table} GROUP BY 1"
            )
        return {r["schema_version"]: int(r["n"]) for r in rows}

    async def names(self, conn: asyncpg.Connection) -> list[str]:
        """Every pooled name (schema and role), oldest first."""
        with translated("warm pool names"):
            rows = await conn.fetch(f"SELECT name FROM {self._table} ORDER BY created_at, name")
        return [r["name"] for r in rows]

    async def add(self, conn: asyncpg.Connection) -> str:
        """Make one pooled schema and role at the latest version (caller's transaction)."""
        name = pooled_name(self._store.tenant_prefix, secrets.token_hex(TOKEN_BYTES))
        with translated("warm pool add"):
            await self._store.build(conn, name, name, self._steps)
            await conn.execute(
                f"INSERT INTO {self._table} (name, schema_version) VALUES ($1, $2)",
                name,
                self.latest,
            )
        return name

    async def discard(self, conn: asyncpg.Connection, *, stale: bool) -> str | None:
        """Drop one pooled schema and role: made from an older template (``stale``), or else
        one at the latest version. None if there is none that no claim holds."""
        version_is = "<" if stale else "="
        with translated("warm pool discard"):
            name = await conn.fetchval(
                f"DELETE FROM {self._table} WHERE name = (SELECT name FROM {self._table}"
                f" WHERE schema_version {version_is} $1 ORDER BY created_at"
                " LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING name",
                self.latest,
            )
            if name is None:
                return None
            await self._drop(conn, self._checked(name))
        return str(name)

    async def claim(
        self, conn: asyncpg.Connection, tenant_id: str, plan: str
    ) -> TenantRecord | None:
        """The tenant made from a pooled schema, in the caller's transaction; None when the pool
        has nothing this release may hand out (then the caller creates the tenant as usual)."""
        with translated(f"warm pool claim {tenant_id}"):
            row = await self._take(conn)
            if row is None:
                return None
            pooled, version = self._checked(row["name"]), int(row["schema_version"])
            schema, role = self._store.schema_of(tenant_id), self._store.role_of(tenant_id)
            # One round trip: the renames, then the policies pointed at the new role name.
            await conn.execute(
                f"ALTER SCHEMA {quote_ident(pooled)} RENAME TO {quote_ident(schema)};"
                f" ALTER ROLE {quote_ident(pooled)} RENAME TO {quote_ident(role)};"
                + _rebind_policies_sql(schema, role)
            )
            # As at creation: PUBLIC may have been given large objects back since the pool was made.
            await refuse_large_objects(conn, role)
            record = await self._store.register(conn, tenant_id, plan, version)
            if version < self.latest:  # made by an older release: brought to the latest here
                await self._store.migrate(
                    conn, tenant_id, list(plan_migrations(self._template, version).steps)
                )
                migrated = await self._store.get(conn, tenant_id)
                assert migrated is not None
                return migrated
            return record

    async def _take(self, conn: asyncpg.Connection) -> asyncpg.Record | None:
        """Delete and return the entry to hand out: the latest version, oldest first. An entry
        whose schema or role someone dropped by hand is discarded (what is left of it dropped)
        and the next one taken. Only the taken entry is checked: checking them all in the
        query's WHERE joined the whole pool to pg_namespace and pg_authid on every claim, a
        cost that grew with the number of tenants."""
        while True:
            row = await conn.fetchrow(
                f"DELETE FROM {self._table} WHERE name = (SELECT name FROM {self._table}"
                " WHERE schema_version <= $1"
                " ORDER BY schema_version DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " RETURNING name, schema_version,"
                " to_regnamespace(quote_ident(name)) IS NOT NULL"
                " AND to_regrole(quote_ident(name)) IS NOT NULL AS whole",
                self.latest,
            )
            if row is None or row["whole"]:
                return row
            await self._drop(conn, self._checked(row["name"]))
            log.warning("warm_pool_entry_discarded", name=row["name"], reason="objects_missing")

    async def drain(self, conn: asyncpg.Connection) -> int:
        """Drop every pooled schema and role (tests, bench cleanup); returns how many."""
        dropped = 0
        while True:
            with translated("warm pool drain"):
                async with conn.transaction():
                    name = await conn.fetchval(
                        f"DELETE FROM {self._table} WHERE name = (SELECT name FROM {self._table}"
                        " LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING name"
                    )
                    if name is None:
                        return dropped
                    await self._drop(conn, self._checked(name))
            dropped += 1

    def _checked(self, name: str) -> str:
        # The table is ours, but what it names is dropped or handed to a tenant: check anyway.
        if not is_pooled_name(self._store.tenant_prefix, name):
            raise PermanentError("warm_pool_corrupt", f"not a pooled name: {name!r}")
        return name

    async def _drop(self, conn: asyncpg.Connection, name: str) -> None:
        # The role owns nothing and holds privileges only inside its schema (default privileges
        # included), so the schema goes first and takes them with it.
        q_name = quote_ident(name)
        await conn.execute(f"DROP SCHEMA IF EXISTS {q_name} CASCADE; DROP ROLE IF EXISTS {q_name}")


def _rebind_policies_sql(schema: str, role: str) -> str:
    """Point the isolation policies of ``schema``'s tables at ``role`` after a rename: their
    predicate names the role as text, which a rename does not follow (grants, default
    privileges and memberships hold the role's oid, and do). A DO block, so the tables are
    found and altered on the server; every name in it is quote_literal()-ed (and ours)."""
    predicate = quote_literal(isolation_predicate(role))
    return (
        "DO $rebind$ DECLARE t record; BEGIN"
        " FOR t IN SELECT c.relname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE n.nspname = {quote_literal(schema)} AND p.polname = {quote_literal(POLICY_NAME)}"
        " LOOP EXECUTE format('ALTER POLICY %I ON %I.%I USING (%s) WITH CHECK (%s)',"
        f" {quote_literal(POLICY_NAME)}, {quote_literal(schema)}, t.relname,"
        f" {predicate}, {predicate}); END LOOP; END $rebind$"
    )
