"""Tenants own nothing outside their schema: no tenant role may create large objects.

Large objects live outside every schema, so no quota, backup or erase of a tenant would see them,
and PostgreSQL lets PUBLIC create them. Only the functions' owner (a superuser) can revoke that:
control migration 0007 does when the service role is one, and ``scripts/stack`` does as
superuser; otherwise an operator runs the REVOKE once (README).
"""

import asyncpg

from domain.errors import PermanentError

LARGE_OBJECT_CREATORS = (
    "pg_catalog.lo_creat(integer)",
    "pg_catalog.lo_create(oid)",
    "pg_catalog.lo_from_bytea(oid, bytea)",
)
_REVOKE = f"REVOKE EXECUTE ON FUNCTION {', '.join(LARGE_OBJECT_CREATORS)} FROM PUBLIC"


async def refuse_large_objects(conn: asyncpg.Connection, role: str) -> None:
    """Raise PermanentError when ``role`` could create large objects; revoke it first where we
    may (we own the functions only as a superuser). Runs in the caller's transaction."""
    # One round trip in the usual case (revoked already): every provisioning asks.
    if not await _creatable(conn, role):
        return
    if await conn.fetchval(
        "SELECT pg_has_role(current_user, proowner, 'USAGE') FROM pg_proc"
        " WHERE oid = 'pg_catalog.lo_from_bytea(oid, bytea)'::regprocedure"
    ):
        await conn.execute(_REVOKE)
    if await _creatable(conn, role):
        raise PermanentError(
            "large_objects_allowed",
            f"tenant roles could create large objects outside their schema: as a superuser, {_REVOKE}",
        )


async def _creatable(conn: asyncpg.Connection, role: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT bool_or(has_function_privilege($1, f, 'EXECUTE')) FROM unnest($2::text[]) AS f",
            role,
            list(LARGE_OBJECT_CREATORS),
        )
    )
