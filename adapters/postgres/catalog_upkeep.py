"""PostgresCatalogUpkeep: the statistics of the database's own catalogues, and their VACUUM.

The catalogues are per database (``pg_attribute``, ``pg_depend``, ``pg_class``...), except the
shared ones (``relisshared``: ``pg_authid``, ``pg_database``...), one copy for the cluster. A
database's owner may vacuum every catalogue of it but the shared ones; anyone else is told
"skipping ..." in a WARNING and nothing happens, so whether the service's role may is asked once
(``may_vacuum``) rather than learnt from a warning per catalogue per round.
"""

import asyncpg

from adapters.postgres.errors import translated
from domain.catalog_upkeep import CatalogStats
from domain.tenant_ids import quote_ident

# pg_stat_sys_tables also lists pg_toast and information_schema tables: pg_catalog's only.
_STATS = """
SELECT s.relname, s.n_live_tup, s.n_dead_tup, c.relisshared
  FROM pg_stat_sys_tables s JOIN pg_class c ON c.oid = s.relid
 WHERE s.schemaname = 'pg_catalog'
"""
# The database owner's privileges (a member of the owner role, or a superuser, has them too):
# what VACUUM checks, with the session's current role (SET ROLE included).
_MAY_VACUUM = """
SELECT pg_has_role(current_user, d.datdba, 'USAGE')
  FROM pg_database d WHERE d.datname = current_database()
"""


class PostgresCatalogUpkeep:
    """Reads and vacuums the current database's ``pg_catalog`` tables."""

    async def may_vacuum(self, conn: asyncpg.Connection) -> bool:
        """Whether the session's role has the database owner's privileges (VACUUM of the
        database's own catalogues is theirs)."""
        with translated("catalog upkeep permission"):
            return bool(await conn.fetchval(_MAY_VACUUM))

    async def stats(self, conn: asyncpg.Connection) -> list[CatalogStats]:
        """Live and dead rows of every pg_catalog table, shared ones marked."""
        with translated("catalog upkeep stats"):
            rows = await conn.fetch(_STATS)
        return [
            CatalogStats(r["relname"], int(r["n_live_tup"]), int(r["n_dead_tup"]), r["relisshared"])
            for r in rows
        ]

    async def vacuum(self, conn: asyncpg.Connection, catalog: str) -> str | None:
        """VACUUM ``pg_catalog.<catalog>`` on ``conn``, which must not be in a transaction
        (VACUUM cannot run in one). None once done; PostgreSQL's warning if it skipped it
        (not permitted, or locked by another vacuum: SKIP_LOCKED, so that one does it)."""
        warnings: list[str] = []

        # asyncpg hands a notice to its listeners with call_soon as it reads it, before the
        # statement's own result (which follows it on the wire): all are in by the await's end.
        def listen(_: object, message: asyncpg.PostgresLogMessage) -> None:
            severity = getattr(message, "severity_en", None) or getattr(message, "severity", "")
            if severity == "WARNING":
                warnings.append(str(getattr(message, "message", message)))

        conn.add_log_listener(listen)
        try:
            with translated(f"vacuum of {catalog}"):
                await conn.execute(f"VACUUM (SKIP_LOCKED) pg_catalog.{quote_ident(catalog)}")
        finally:
            conn.remove_log_listener(listen)
        return "; ".join(warnings) or None
