"""PostgresTenantStore: the registry rows and the DDL that makes a tenant schema.

Every statement runs on the caller's connection, inside the caller's transaction: the schema,
role, tables, policies and registry row appear together or not at all.
"""

from collections.abc import Sequence

import asyncpg

from adapters.postgres.control_schema import EXTENSIONS_SCHEMA
from adapters.postgres.large_objects import refuse_large_objects
from domain.lifecycle import SESSION_TAG_PREFIX, TenantStatus, session_tag
from domain.migrations import Migration
from domain.provisioning import ExistingTenant
from domain.tenant_ids import NAME_PREFIX, quote_ident, quote_literal, role_name, schema_name
from domain.tenants import TenantRecord

__all__ = ["PostgresTenantStore", "TenantRecord", "tenant_lock_sql"]

POLICY_NAME = "tenant_isolation"
_TENANT_LOCK_CLASS = 7_311  # first key of the per-tenant advisory lock (two-int form)


class PostgresTenantStore:
    def __init__(
        self,
        control_schema: str,
        app_role: str,
        *,
        tenant_prefix: str = NAME_PREFIX,
        session_tag_prefix: str = SESSION_TAG_PREFIX,
    ) -> None:
        """Prefixes are the deployment's (runtime.names: ``Names.tenant_store()``), never input."""
        self._tenants = f"{quote_ident(control_schema)}.tenants"
        self._app_role = app_role
        self._prefix = tenant_prefix
        self._tag_prefix = session_tag_prefix

    def schema_of(self, tenant_id: str) -> str:
        """The tenant's schema name in this deployment (its namespace's prefix)."""
        return schema_name(tenant_id, self._prefix)

    def role_of(self, tenant_id: str) -> str:
        """The tenant's role name in this deployment (roles are cluster-wide)."""
        return role_name(tenant_id, self._prefix)

    @property
    def tenant_prefix(self) -> str:
        """What this deployment's tenant schema and role names start with."""
        return self._prefix

    @property
    def table(self) -> str:
        return self._tenants

    async def lock_tenant(self, conn: asyncpg.Connection, tenant_id: str) -> None:
        """Serialise all work on one tenant, whichever topic it came from, until commit."""
        await conn.execute(tenant_lock_sql(tenant_id))

    async def get(self, conn: asyncpg.Connection, tenant_id: str) -> TenantRecord | None:
        row = await conn.fetchrow(f"SELECT * FROM {self._tenants} WHERE tenant_id = $1", tenant_id)
        return _record(row) if row else None

    async def lock_tenants(self, conn: asyncpg.Connection, tenant_ids: Sequence[str]) -> None:
        """lock_tenant for each, in one statement, in key order (no deadlock between two)."""
        await conn.execute(
            f"SELECT pg_advisory_xact_lock({_TENANT_LOCK_CLASS}, k) FROM"
            " (SELECT DISTINCT hashtext(t) AS k FROM unnest($1::text[]) AS t ORDER BY k) AS keys",
            list(tenant_ids),
        )

    async def get_many(
        self, conn: asyncpg.Connection, tenant_ids: Sequence[str]
    ) -> dict[str, TenantRecord]:
        rows = await conn.fetch(
            f"SELECT * FROM {self._tenants} WHERE tenant_id = ANY($1::text[])", list(tenant_ids)
        )
        return {r["tenant_id"]: _record(r) for r in rows}

    async def all(self, conn: asyncpg.Connection) -> list[TenantRecord]:
        return [_record(r) for r in await conn.fetch(f"SELECT * FROM {self._tenants} ORDER BY 1")]

    async def existing(self, conn: asyncpg.Connection, tenant_id: str) -> ExistingTenant | None:
        record = await self.get(conn, tenant_id)
        return ExistingTenant(record.plan, record.status) if record else None

    async def count_live(self, conn: asyncpg.Connection) -> int:
        return int(
            await conn.fetchval(f"SELECT count(*) FROM {self._tenants} WHERE status <> 'erased'")
        )

    async def create(
        self, conn: asyncpg.Connection, tenant_id: str, plan: str, migrations: list[Migration]
    ) -> TenantRecord:
        """Schema, role, template tables at the latest version, RLS, grants, registry row."""
        await self.build(conn, self.schema_of(tenant_id), self.role_of(tenant_id), migrations)
        version = max((m.version for m in migrations), default=0)
        return await self.register(conn, tenant_id, plan, version)

    async def build(
        self, conn: asyncpg.Connection, schema: str, role: str, migrations: list[Migration]
    ) -> None:
        """The NOLOGIN role and the schema with the template, grants and RLS, under the given
        names: all of a tenant but its registry row and the app role's grant (the warm pool
        builds these ahead, under neutral names)."""
        q_schema, q_role = quote_ident(schema), quote_ident(role)
        await conn.execute(f"CREATE ROLE {q_role} NOLOGIN")
        await refuse_large_objects(conn, role)
        await conn.execute(f"CREATE SCHEMA {q_schema}")
        await self._apply(conn, schema, role, migrations)

    async def register(
        self, conn: asyncpg.Connection, tenant_id: str, plan: str, version: int
    ) -> TenantRecord:
        """The tenant's role to the app role, and its registry row (its schema exists)."""
        await conn.execute(
            f"GRANT {quote_ident(self.role_of(tenant_id))} TO {quote_ident(self._app_role)}"
        )
        row = await conn.fetchrow(
            f"INSERT INTO {self._tenants}"
            " (tenant_id, schema_name, role_name, plan, status, schema_version)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            tenant_id,
            self.schema_of(tenant_id),
            self.role_of(tenant_id),
            plan,
            TenantStatus.ACTIVE.value,
            version,
        )
        return _record(row)

    async def migrate(
        self, conn: asyncpg.Connection, tenant_id: str, steps: list[Migration]
    ) -> int:
        """Apply ``steps`` to the tenant's schema and record the new version (caller's txn)."""
        await self._apply(conn, self.schema_of(tenant_id), self.role_of(tenant_id), steps)
        version = max(m.version for m in steps)
        await conn.execute(
            f"UPDATE {self._tenants} SET schema_version = $2, updated_at = now()"
            " WHERE tenant_id = $1",
            tenant_id,
            version,
        )
        return version

    async def set_status(
        self, conn: asyncpg.Connection, tenant_id: str, status: TenantStatus
    ) -> None:
        await conn.execute(
            f"UPDATE {self._tenants} SET status = $2, updated_at = now() WHERE tenant_id = $1",
            tenant_id,
            status.value,
        )

    async def mark_erasing(
        self, conn: asyncpg.Connection, tenant_id: str, archive_id: str | None
    ) -> None:
        """The erase is accepted: nothing brings the tenant back, and its archive id is fixed."""
        await conn.execute(
            f"UPDATE {self._tenants} SET status = $2, erase_archive_id = $3, updated_at = now()"
            " WHERE tenant_id = $1",
            tenant_id,
            TenantStatus.ERASING.value,
            archive_id,
        )

    async def revoke_access(self, conn: asyncpg.Connection, tenant_id: str) -> int:
        """Take the tenant role from the app role and end the tenant's open sessions.

        Applications tag a tenant's connections with application_name = session_tag(id)
        (Postgres does not show another backend's SET ROLE); those, and any backend logged in
        as the tenant role itself, are terminated. Returns how many were terminated.
        """
        role = self.role_of(tenant_id)
        if await self._is_member(conn, role):
            await conn.execute(f"REVOKE {quote_ident(role)} FROM {quote_ident(self._app_role)}")
        return int(
            await conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND (usename = $1 OR application_name = $2)",
                role,
                session_tag(tenant_id, self._tag_prefix),
            )
        )

    async def grant_access(self, conn: asyncpg.Connection, tenant_id: str) -> None:
        role = self.role_of(tenant_id)
        if not await self._is_member(conn, role):
            await conn.execute(f"GRANT {quote_ident(role)} TO {quote_ident(self._app_role)}")

    async def _is_member(self, conn: asyncpg.Connection, role: str) -> bool:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_auth_members m"
                " JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles a ON a.oid = m.member"
                " WHERE r.rolname = $1 AND a.rolname = $2)",
                role,
                self._app_role,
            )
        )

    async def tables(self, conn: asyncpg.Connection, schema: str) -> list[str]:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 1",
            schema,
        )
        return [r["relname"] for r in rows]

    async def drop_tables(self, conn: asyncpg.Connection, schema: str, tables: list[str]) -> None:
        """One batch, in the caller's transaction: keeps each transaction's locks bounded."""
        if tables:
            names = ", ".join(f"{quote_ident(schema)}.{quote_ident(t)}" for t in tables)
            await conn.execute(f"DROP TABLE IF EXISTS {names} CASCADE")

    async def drop_schema_and_role(self, conn: asyncpg.Connection, tenant_id: str) -> list[str]:
        schema, role = self.schema_of(tenant_id), self.role_of(tenant_id)
        dropped = []
        if await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f"DROP SCHEMA {quote_ident(schema)} CASCADE")
            dropped.append("schema")
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            # Whatever the role still owns or was granted outside its schema (large objects
            # created before they were revoked, anything arranged by hand) is the tenant's too
            # and must not make DROP ROLE fail. DROP OWNED needs the role's privileges, which
            # the service role (CREATEROLE, not superuser) takes for the rest of this
            # transaction; dropping the role ends that membership again.
            q_role = quote_ident(role)
            if not await conn.fetchval("SELECT pg_has_role(current_user, $1, 'USAGE')", role):
                await conn.execute(f"GRANT {q_role} TO CURRENT_USER")
            owned = await conn.fetchval(
                "SELECT count(*) FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid"
                " WHERE r.rolname = $1 AND d.deptype IN ('o', 'a')"
                " AND d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                role,
            )
            await conn.execute(f"DROP OWNED BY {q_role}")
            await conn.execute(f"DROP ROLE {q_role}")
            dropped += (["outside_objects"] if owned else []) + ["role"]
        return dropped

    async def tombstone(self, conn: asyncpg.Connection, tenant_id: str) -> None:
        """The registry row stays (ids are never reused) but keeps nothing about the tenant."""
        await conn.execute(
            f"UPDATE {self._tenants} SET status = 'erased', plan = '', schema_version = 0,"
            " updated_at = now() WHERE tenant_id = $1",
            tenant_id,
        )

    async def _apply(
        self, conn: asyncpg.Connection, schema: str, role: str, steps: list[Migration]
    ) -> None:
        # One round trip: a step's text ends on a line of its own (it may end in a comment).
        path = f"SET LOCAL search_path TO {quote_ident(schema)}, {quote_ident(EXTENSIONS_SCHEMA)}"
        await conn.execute(
            "\n;\n".join([path, *(migration.sql for migration in steps), "RESET search_path"])
        )
        await self._secure(conn, schema, role)

    async def _secure(self, conn: asyncpg.Connection, schema: str, role: str) -> None:
        """Grants on the tenant's own schema only, and RLS on every table in it."""
        q_schema, q_role = quote_ident(schema), quote_ident(role)
        # The schema's relations through pg_depend's index, not a scan of pg_class (which
        # GRANT ... ON ALL TABLES IN SCHEMA does): with thousands of tenants that scan was
        # most of a migration's cost.
        rows = await conn.fetch(
            "SELECT c.relname, c.relkind::text AS relkind, EXISTS (SELECT 1 FROM pg_policy p"
            "  WHERE p.polrelid = c.oid AND p.polname = $2) AS secured"
            " FROM pg_depend d JOIN pg_class c ON c.oid = d.objid"
            " WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_namespace'::regclass"
            " AND d.refobjid = (SELECT oid FROM pg_namespace WHERE nspname = $1)"
            " AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') ORDER BY 1",
            schema,
            POLICY_NAME,
        )
        tables = [f"{q_schema}.{quote_ident(r['relname'])}" for r in rows if r["relkind"] != "S"]
        sequences = [f"{q_schema}.{quote_ident(r['relname'])}" for r in rows if r["relkind"] == "S"]
        statements = [f"GRANT USAGE ON SCHEMA {q_schema} TO {q_role}"]
        if tables:
            statements.append(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {', '.join(tables)} TO {q_role}"
            )
        if sequences:
            statements.append(f"GRANT USAGE, SELECT ON SEQUENCE {', '.join(sequences)} TO {q_role}")
        # Tables added by later migrations inherit the same grants.
        statements += [
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {q_schema}"
            f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {q_role}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {q_schema} GRANT USAGE, SELECT ON SEQUENCES TO {q_role}",
        ]
        # Rows are visible only to a session acting as exactly this tenant's role: a grant that
        # leaked to another role would still show it nothing.
        predicate = isolation_predicate(role)
        for row in rows:
            if row["relkind"] in ("r", "p") and not row["secured"]:
                q_table = f"{q_schema}.{quote_ident(row['relname'])}"
                # Not FORCEd: the owning service role must still read every row (pg_dump refuses
                # to dump tables whose rows a policy would hide from it).
                statements += [
                    f"ALTER TABLE {q_table} ENABLE ROW LEVEL SECURITY",
                    f"CREATE POLICY {quote_ident(POLICY_NAME)} ON {q_table}"
                    f" USING ({predicate}) WITH CHECK ({predicate})",
                ]
        await conn.execute(";\n".join(statements))  # one round trip: identifiers are quoted


def isolation_predicate(role: str) -> str:
    """The policy predicate: rows are visible only to a session acting as exactly ``role``."""
    return f"current_user = {quote_literal(role)}"


def tenant_lock_sql(tenant_id: str) -> str:
    """The per-tenant transaction lock, as SQL (also sent through psql by restores)."""
    return (
        f"SELECT pg_advisory_xact_lock({_TENANT_LOCK_CLASS}, hashtext({quote_literal(tenant_id)}));"
    )


def _record(row: asyncpg.Record) -> TenantRecord:
    return TenantRecord(
        tenant_id=row["tenant_id"],
        schema_name=row["schema_name"],
        role_name=row["role_name"],
        plan=row["plan"],
        status=TenantStatus(row["status"]),
        schema_version=row["schema_version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        erase_archive_id=row.get("erase_archive_id"),
    )
