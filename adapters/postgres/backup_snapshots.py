"""PostgresBackupSnapshots and PostgresBackupKeyring: what a backup reads from PostgreSQL
outside a unit of work (service.ports.BackupSnapshots / BackupKeyring).

A snapshot is one read-only REPEATABLE READ transaction exported with pg_export_snapshot(), held
open while pg_dump attaches to it; the manifest's row counts are taken inside it, so they
describe exactly the data in the artifact whatever the tenant writes meanwhile. They run under
their own budget (adapters/postgres/row_counts.py), not the pool's statement timeout.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from adapters.age_keys import PostgresTenantKeys
from adapters.postgres.errors import translated
from adapters.postgres.row_counts import row_counts
from domain.errors import PermanentError
from service.ports import Snapshot


class PostgresBackupSnapshots:
    def __init__(self, pool: asyncpg.Pool, count_budget_ms: int) -> None:
        self._pool, self._budget_ms = pool, count_budget_ms

    @asynccontextmanager
    async def snapshot(self, schema: str) -> AsyncIterator[Snapshot]:
        in_block = False  # what the caller's block raises is its own, left as it is
        try:
            async with self._pool.acquire() as conn:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    exported = await conn.fetchval("SELECT pg_export_snapshot()")
                    counts = await row_counts(conn, schema, self._budget_ms)
                    in_block = True
                    yield Snapshot(str(exported), counts.exact, counts.estimated)
                    in_block = False
        except BaseException:
            if in_block:
                raise
            with translated("backup snapshot"):
                raise


class PostgresBackupKeyring:
    """The tenants' age keys through the pool; ``identity`` needs the master identity file."""

    def __init__(
        self, pool: asyncpg.Pool, keys: PostgresTenantKeys, master_identity_file: Path | None
    ) -> None:
        self._pool, self._keys, self._master = pool, keys, master_identity_file

    async def recipient(self, tenant_id: str) -> str:
        with translated("backup preparation"):
            async with self._pool.acquire() as conn:
                return await self._keys.recipient(conn, tenant_id)

    async def identity(self, tenant_id: str) -> str | None:
        if self._master is None:
            raise PermanentError("no_master_identity", "TENANT_BACKUP_MASTER_IDENTITY_FILE unset")
        with translated("restore preparation"):
            async with self._pool.acquire() as conn:
                return await self._keys.identity(conn, tenant_id, self._master)
