"""PostgresApiReads: what the HTTP API shows, read through its read-only role.

Every method takes a connection from the API's read pool (the deployment's read role,
``<ns>_tenant_api_reader``, read-only sessions), so a bug here can read but never write. Lists
are keyset-paginated: the cursor is the last row's sort key, so a page costs an index range scan
however deep the client pages.
"""

import json
from datetime import datetime
from typing import Any

import asyncpg

from adapters.postgres.errors import translated
from contracts import codec
from domain.tenant_ids import quote_ident


class PostgresApiReads:
    def __init__(self, control_schema: str) -> None:
        self._s = quote_ident(control_schema)

    async def tenants(
        self,
        conn: asyncpg.Connection,
        *,
        after: str | None,
        limit: int,
        status: str | None,
        plan: str | None,
    ) -> list[dict[str, Any]]:
        with translated("api list tenants"):
            rows = await conn.fetch(
                "SELECT tenant_id, status, plan, schema_name, schema_version, created_at,"
                f" updated_at FROM {self._s}.tenants"
                " WHERE ($1::text IS NULL OR tenant_id > $1)"
                " AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR plan = $3)"
                " ORDER BY tenant_id LIMIT $4",
                after,
                status,
                plan,
                limit,
            )
        return [dict(r) for r in rows]

    async def tenant(self, conn: asyncpg.Connection, tenant_id: str) -> dict[str, Any] | None:
        with translated("api get tenant"):
            row = await conn.fetchrow(
                "SELECT tenant_id, status, plan, schema_name, schema_version, created_at,"
                f" updated_at FROM {self._s}.tenants WHERE tenant_id = $1",
                tenant_id,
            )
        return dict(row) if row else None

    async def metrics(
        self, conn: asyncpg.Connection, tenant_id: str, *, before: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """The tenant's metrics history, newest first (cursor: a window_start)."""
        with translated("api tenant metrics"):
            rows = await conn.fetch(
                "SELECT window_start, collected_at, plan, size_bytes, table_count, live_tuples,"
                " dead_tuples, bloat_bytes, seq_scans, idx_scans, cache_hit_ratio, connections,"
                f" redis_bytes, redis_keys FROM {self._s}.tenant_metrics WHERE tenant_id = $1"
                " AND ($2::timestamptz IS NULL OR window_start < $2)"
                " ORDER BY window_start DESC LIMIT $3",
                tenant_id,
                _timestamp(before),
                limit,
            )
        return [dict(r) for r in rows]

    async def backups(
        self, conn: asyncpg.Connection, tenant_id: str, *, before: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Catalogued backups, newest first (cursor: a backup_id)."""
        with translated("api tenant backups"):
            rows = await conn.fetch(
                "SELECT backup_id, target, uri, bytes, sha256, schema_version, started_at,"
                f" finished_at, last_drill_at, last_drill_ok FROM {self._s}.backups b"
                " WHERE tenant_id = $1 AND ($2::text IS NULL OR (finished_at, backup_id) <"
                f" (SELECT finished_at, backup_id FROM {self._s}.backups WHERE backup_id = $2))"
                " ORDER BY finished_at DESC, backup_id DESC LIMIT $3",
                tenant_id,
                before,
                limit,
            )
        return [dict(r) for r in rows]

    async def timeline(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        *,
        after: int | None,
        limit: int,
        types: list[str] | None,
    ) -> list[tuple[int, dict[str, Any]]]:
        """The tenant's result events in the order they were stated (cursor: the outbox id)."""
        with translated("api tenant timeline"):
            rows = await conn.fetch(
                f"SELECT id, payload, headers FROM {self._s}.outbox WHERE key = $1"
                " AND id > $2 AND ($3::text[] IS NULL OR event_type = ANY($3))"
                " ORDER BY id LIMIT $4",
                tenant_id.encode("utf-8"),
                after or 0,
                types,
                limit,
            )
        return [(r["id"], _event(r)) for r in rows]

    async def results(
        self, conn: asyncpg.Connection, result_ids: list[str]
    ) -> list[dict[str, Any]]:
        """Result events by id (results have ids derived from their request's id)."""
        with translated("api operation results"):
            rows = await conn.fetch(
                f"SELECT payload, headers FROM {self._s}.outbox WHERE event_id = ANY($1::text[])",
                result_ids,
            )
        return [_event(r) for r in rows]

    async def below_version(self, conn: asyncpg.Connection, version: int) -> list[str]:
        """Live tenants whose schema is older than ``version`` (what a rollout must migrate)."""
        with translated("api tenants to migrate"):
            rows = await conn.fetch(
                f"SELECT tenant_id FROM {self._s}.tenants WHERE status IN ('active', 'suspended')"
                " AND schema_version < $1 ORDER BY created_at, tenant_id",
                version,
            )
        return [r["tenant_id"] for r in rows]

    async def operation(self, conn: asyncpg.Connection, operation_id: str) -> dict[str, Any] | None:
        with translated("api get operation"):
            row = await conn.fetchrow(
                f"SELECT * FROM {self._s}.api_operations WHERE operation_id = $1", operation_id
            )
        return dict(row) if row else None


def _event(row: asyncpg.Record) -> dict[str, Any]:
    headers = row["headers"]
    if isinstance(headers, str):
        headers = json.loads(headers)
    envelope = codec.read_envelope(
        bytes(row["payload"]), [(k, str(v).encode()) for k, v in (headers or {}).items()]
    )
    return envelope.model_dump(mode="json", exclude_none=True)


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
