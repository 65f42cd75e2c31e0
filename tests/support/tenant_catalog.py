"""What PostgreSQL holds about one tenant's schema and role, with its name taken out, so a
tenant made one way can be compared with one made another (created vs claimed from the pool)."""

from typing import Any

import asyncpg

from adapters.postgres.large_objects import LARGE_OBJECT_CREATORS

_ROLE = (
    "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,"
    " rolbypassrls, rolconnlimit, rolvaliduntil, rolconfig FROM pg_roles WHERE rolname = $1"
)
_MEMBERS = (
    "SELECT m.rolname FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid"
    " JOIN pg_roles m ON m.oid = am.member WHERE r.rolname = $1 ORDER BY 1"
)
_SCHEMA = (
    "SELECT pg_get_userbyid(nspowner) AS owner, nspacl::text[] AS acl FROM pg_namespace"
    " WHERE nspname = $1"
)
_RELATIONS = (
    "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner) AS owner, c.relacl::text[] AS acl,"
    " c.relrowsecurity, c.relforcerowsecurity,"
    " (SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)"
    "  FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)"
    "  AS columns"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1"
    " ORDER BY c.relname"
)
_POLICIES = (
    "SELECT c.relname, p.polname, p.polcmd, p.polpermissive,"
    " (SELECT array_agg(coalesce(pg_get_userbyid(r), 'public') ORDER BY 1) FROM unnest(p.polroles) r)"
    "  AS roles, pg_get_expr(p.polqual, p.polrelid) AS qual,"
    " pg_get_expr(p.polwithcheck, p.polrelid) AS with_check"
    " FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 ORDER BY 1, 2"
)
_DEFAULT_ACL = (
    "SELECT d.defaclobjtype, d.defaclacl::text[] AS acl FROM pg_default_acl d"
    " JOIN pg_namespace n ON n.oid = d.defaclnamespace WHERE n.nspname = $1 ORDER BY 1"
)


async def tenant_catalog(conn: asyncpg.Connection, name: str) -> dict[str, Any]:
    """The schema and role called ``name`` (a tenant's, or a pooled one), ``name`` -> <T>."""

    def norm(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(name, "<T>")
        if isinstance(value, list | tuple):
            return [norm(v) for v in value]
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        return value

    async def rows(sql: str) -> list[dict[str, Any]]:
        return [norm(dict(r)) for r in await conn.fetch(sql, name)]

    return {
        "role": await rows(_ROLE),
        "members": await rows(_MEMBERS),
        "schema": await rows(_SCHEMA),
        "relations": await rows(_RELATIONS),
        "policies": await rows(_POLICIES),
        "default_acl": await rows(_DEFAULT_ACL),
        "large_objects": await conn.fetchval(
            "SELECT bool_or(has_function_privilege($1, f, 'EXECUTE')) FROM unnest($2::text[]) f",
            name,
            list(LARGE_OBJECT_CREATORS),
        ),
    }


async def object_oids(conn: asyncpg.Connection, names: list[str]) -> set[tuple[int, int]]:
    """(schema oid, role oid) of each name: what survives a rename, to tell claimed from made."""
    return {
        (r["nsp"], r["rol"])
        for r in await conn.fetch(
            "SELECT n.oid AS nsp, r.oid AS rol FROM pg_namespace n"
            " JOIN pg_roles r ON r.rolname = n.nspname WHERE n.nspname = ANY($1::text[])",
            names,
        )
    }
