"""Migration rollouts as the migrating consumer reads them: is this rollout halted?"""

import asyncpg

from domain.tenant_ids import quote_ident


class PostgresRollouts:
    def __init__(self, control_schema: str) -> None:
        self._table = f"{quote_ident(control_schema)}.migration_rollouts"

    async def status(self, conn: asyncpg.Connection, rollout_id: str) -> str | None:
        status = await conn.fetchval(
            f"SELECT status FROM {self._table} WHERE rollout_id = $1", rollout_id
        )
        return None if status is None else str(status)
