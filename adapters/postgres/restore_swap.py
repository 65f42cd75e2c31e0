"""The restore role and the fenced swap: the SQL a restore's psql session runs around the dump.

A dump's SQL is not trusted to run as the service role (an index expression or a function body
in it executes during the restore). psql therefore logs in as a dedicated role that can do
nothing but create schemas in this database and call two functions:

- ``restore_swap_out``: checks the job's lease is this runner's, then renames the live schema to
  ``replaced_<hex>`` and revokes the tenant's access to it;
- ``restore_swap_in``: checks the lease again (at the very end, against the clock), records the
  swap on the job row, hands the restored objects to the service role, re-applies the tenant's
  grants, and registers the replaced schema.

Both are SECURITY DEFINER functions owned by the service role; they run inside the psql
transaction, so the swap and its record commit together or not at all.
"""

import hashlib
import hmac

import asyncpg

from adapters.postgres.control_schema import lock_shared_catalog
from domain.errors import LEASE_LOST
from domain.tenant_ids import quote_ident, quote_literal


def restore_role_name(control_schema: str) -> str:
    """The restore login, derived from the control schema (PostgreSQL's 63-byte limit)."""
    return f"{control_schema[:55]}_restore"


def restore_role_password(service_password: str, role: str) -> str:
    """Derived from the service's own password: every worker agrees, no new secret to hand out."""
    return hmac.new(service_password.encode(), f"restore-login:{role}".encode(), hashlib.sha256).hexdigest()


def _functions(ctl: str, role: str) -> list[str]:
    # search_path pinned: a definer function must not resolve names through the caller's path.
    head = "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$"
    fence = (
        "j.job_id = p_job AND j.kind = 'restore' AND j.status = 'running'"
        " AND j.lease_owner = p_owner AND j.lease_until > clock_timestamp()"
        " AND j.swapped_at IS NULL"
    )
    check_name = (
        "IF p_replaced !~ '^replaced_[0-9a-f]{16}$' THEN"
        " RAISE EXCEPTION 'bad replaced schema name %', p_replaced; END IF;"
    )
    out = f"""
CREATE OR REPLACE FUNCTION {ctl}.restore_swap_out(p_job text, p_owner text, p_replaced text)
RETURNS void {head}
DECLARE t record;
BEGIN
  {check_name}
  SELECT r.schema_name, r.role_name INTO t FROM {ctl}.backup_jobs j
    JOIN {ctl}.tenants r ON r.tenant_id = j.tenant_id WHERE {fence};
  IF NOT FOUND THEN RAISE EXCEPTION '{LEASE_LOST}'; END IF;
  EXECUTE format('ALTER SCHEMA %I RENAME TO %I', t.schema_name, p_replaced);
  -- The old copy stays for the grace period, out of the tenant's reach.
  EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC, %I', p_replaced, t.role_name);
END $fn$"""
    into = f"""
CREATE OR REPLACE FUNCTION {ctl}.restore_swap_in(
  p_job text, p_owner text, p_replaced text, p_backup_id text, p_version integer,
  p_grace_s double precision)
RETURNS void {head}
DECLARE t record; o record; s text; r text;
BEGIN
  {check_name}
  UPDATE {ctl}.backup_jobs j SET swapped_at = clock_timestamp(), replaced_schema = p_replaced,
    restored_backup_id = p_backup_id, updated_at = now() WHERE {fence} RETURNING j.tenant_id INTO t;
  IF NOT FOUND THEN RAISE EXCEPTION '{LEASE_LOST}'; END IF;
  SELECT schema_name, role_name INTO s, r FROM {ctl}.tenants WHERE tenant_id = t.tenant_id;
  -- Objects the restore role made become the service's, like a provisioned tenant's.
  EXECUTE format('ALTER SCHEMA %I OWNER TO %I', s, current_user);
  FOR o IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        AND c.relowner = {quote_literal(role)}::regrole LOOP
    EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', s, o.relname, current_user);
  END LOOP;
  FOR o IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = s AND c.relkind = 'S' AND c.relowner = {quote_literal(role)}::regrole LOOP
    EXECUTE format('ALTER SEQUENCE %I.%I OWNER TO %I', s, o.relname, current_user);
  END LOOP;
  FOR o IN SELECT p.oid::regprocedure AS f FROM pg_proc p JOIN pg_namespace n
      ON n.oid = p.pronamespace WHERE n.nspname = s AND p.proowner = {quote_literal(role)}::regrole LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO %I', o.f, current_user);
  END LOOP;
  FOR o IN SELECT t2.oid::regtype AS ty FROM pg_type t2 JOIN pg_namespace n ON n.oid = t2.typnamespace
      WHERE n.nspname = s AND t2.typtype IN ('d', 'e', 'r', 'm')
        AND t2.typowner = {quote_literal(role)}::regrole LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO %I', o.ty, current_user);
  END LOOP;
  -- The dump's grants are not replayed (--no-privileges): the tenant's are set here, as at
  -- provisioning. Its RLS policies come from the dump.
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, r);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', s, r);
  EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', s, r);
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE'
                 ' ON TABLES TO %I', s, r);
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO %I',
                 s, r);
  UPDATE {ctl}.tenants SET schema_version = p_version, updated_at = now()
    WHERE tenant_id = t.tenant_id;
  INSERT INTO {ctl}.replaced_schemas (schema_name, tenant_id, drop_after)
    VALUES (p_replaced, t.tenant_id, now() + make_interval(secs => p_grace_s));
END $fn$"""
    return [out, into]


async def ensure_restore_role(
    conn: asyncpg.Connection, control_schema: str, service_password: str
) -> str:
    """Create or refresh the restore login and the swap functions; returns the role's name."""
    role = restore_role_name(control_schema)
    q_role, ctl = quote_ident(role), quote_ident(control_schema)
    password = restore_role_password(service_password, role)
    async with conn.transaction():
        await lock_shared_catalog(conn)  # it grants on the control schema, as start-up does
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        await conn.execute(
            # SUPERUSER, REPLICATION and BYPASSRLS are off by default and only a superuser could
            # turn them on; the test asserts they stay off.
            f"{verb} ROLE {q_role} LOGIN NOINHERIT NOCREATEDB NOCREATEROLE"
            f" PASSWORD {quote_literal(password)}"
        )
        # A backend waiting on a lock notices a killed psql only with this check.
        await conn.execute(f"ALTER ROLE {q_role} SET client_connection_check_interval = 1000")
        # The service may act on what the restore role creates; never the other way round.
        if not await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", role):
            await conn.execute(f"GRANT {q_role} TO CURRENT_USER")
        db = await conn.fetchval("SELECT current_database()")
        await conn.execute(f"GRANT CREATE ON DATABASE {quote_ident(db)} TO {q_role}")
        for ddl in _functions(ctl, role):
            await conn.execute(ddl)
        signatures = [
            f"{ctl}.restore_swap_out(text, text, text)",
            f"{ctl}.restore_swap_in(text, text, text, text, integer, double precision)",
        ]
        await conn.execute(f"GRANT USAGE ON SCHEMA {ctl} TO {q_role}")
        for sig in signatures:
            await conn.execute(f"REVOKE ALL ON FUNCTION {sig} FROM PUBLIC")
            await conn.execute(f"GRANT EXECUTE ON FUNCTION {sig} TO {q_role}")
    return role


async def terminate_sessions(conn: asyncpg.Connection, role: str, application_name: str) -> int:
    """End the restore role's sessions tagged ``application_name`` (an abandoned attempt)."""
    return int(
        await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE usename = $1 AND application_name = $2",
            role,
            application_name,
        )
    )


async def allow_restore_into(conn: asyncpg.Connection, database: str, role: str) -> None:
    """A drill's scratch database: the restore role may create the schema there."""
    await conn.execute(f"GRANT CREATE ON DATABASE {quote_ident(database)} TO {quote_ident(role)}")


def swap_out_sql(control_schema: str, job_id: str, owner: str, replaced: str) -> str:
    ctl = quote_ident(control_schema)
    args = ", ".join(quote_literal(v) for v in (job_id, owner, replaced))
    return f"SELECT {ctl}.restore_swap_out({args});"


def swap_in_sql(
    control_schema: str,
    job_id: str,
    owner: str,
    replaced: str,
    backup_id: str,
    version: int,
    grace_s: float,
) -> str:
    ctl = quote_ident(control_schema)
    args = ", ".join(quote_literal(v) for v in (job_id, owner, replaced, backup_id))
    return (
        f"SELECT {ctl}.restore_swap_in({args}, {int(version)},"
        f" {float(grace_s)!r}::double precision);"
    )
