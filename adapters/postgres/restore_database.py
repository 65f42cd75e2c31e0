"""PostgresRestoreDatabase: what a restore needs from PostgreSQL around its psql session
(service.ports.RestoreDatabase): the restore role, ending an abandoned attempt's sessions, and a
drill's scratch database. Driver errors leave as the domain's.
"""

import asyncio
from collections.abc import Sequence

import asyncpg
import structlog

from adapters.postgres.control_schema import ensure_extensions
from adapters.postgres.errors import translated
from adapters.postgres.restore_swap import (
    allow_restore_into,
    ensure_restore_role,
    terminate_sessions,
)
from domain.errors import TenantServiceError
from domain.tenant_ids import quote_ident

log = structlog.get_logger(__name__)


class PostgresRestoreDatabase:
    def __init__(
        self, pool: asyncpg.Pool, dsn: str, control_schema: str, service_password: str
    ) -> None:
        self._pool, self._dsn, self._control = pool, dsn, control_schema
        self._password = service_password

    async def restore_role(self) -> str:
        async with self._pool.acquire() as conn:
            with translated("restore role"):
                return await ensure_restore_role(conn, self._control, self._password)

    async def terminate(self, role: str, application_name: str) -> None:
        try:
            async with asyncio.timeout(5):
                with translated("end the restore's sessions"):
                    async with self._pool.acquire() as conn:
                        await terminate_sessions(conn, role, application_name)
        except (TimeoutError, TenantServiceError) as e:
            log.warning("restore_session_not_terminated", error=repr(e))

    async def create_scratch(self, name: str, role: str) -> str:
        with translated("drill database"):
            async with self._pool.acquire() as conn:
                await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
                await allow_restore_into(conn, name, role)
            dsn = self._dsn.rsplit("/", 1)[0] + "/" + name
            try:
                conn = await asyncpg.connect(dsn)
                try:
                    await ensure_extensions(conn)
                finally:
                    await conn.close()
            except BaseException:
                await asyncio.shield(self.drop_scratch(name))  # nothing of a drill outlives it
                raise
        return dsn

    async def count_rows(self, dsn: str, schema: str, tables: Sequence[str]) -> dict[str, int]:
        with translated("drill counts"):
            conn = await asyncpg.connect(dsn)
            try:
                return {
                    t: int(
                        await conn.fetchval(
                            f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(t)}"
                        )
                    )
                    for t in tables
                }
            finally:
                await conn.close()

    async def drop_scratch(self, name: str) -> None:
        with translated("drop the drill database"):
            async with self._pool.acquire() as conn:
                await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
