"""PostgresOperations: the API's own state (operations and idempotency keys).

The only tables the API writes. The registry, catalogue and outbox stay the consumers' own: the
API learns about effects from result events, never by changing them.
"""

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from adapters.postgres.errors import translated
from domain.tenant_ids import quote_ident

_UNIQUE_VIOLATION = "23505"


class RunningOperation(Exception):
    """The tenant already has an operation in flight."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"tenant {tenant_id!r} has an operation running")
        self.tenant_id = tenant_id


class KeyTaken(Exception):
    """Another request committed the same idempotency key first."""


@dataclass(frozen=True)
class NewOperation:
    operation_id: str
    kind: str
    tenant_id: str | None
    actor: str
    event_ids: list[str]
    correlation_id: str


class PostgresOperations:
    def __init__(self, control_schema: str) -> None:
        s = quote_ident(control_schema)
        self._ops, self._keys = f"{s}.api_operations", f"{s}.api_idempotency_keys"
        self._rollouts = f"{s}.migration_rollouts"

    async def by_key(
        self, conn: asyncpg.Connection, actor: str, key: str
    ) -> tuple[str, dict[str, Any]] | None:
        """(request hash, operation row) of a live idempotency key; an expired one is deleted."""
        with translated("api idempotency lookup"):
            await conn.execute(
                f"DELETE FROM {self._keys} WHERE actor = $1 AND key = $2 AND expires_at < now()",
                actor,
                key,
            )
            row = await conn.fetchrow(
                f"SELECT k.request_hash, o.* FROM {self._keys} k JOIN {self._ops} o"
                " USING (operation_id) WHERE k.actor = $1 AND k.key = $2",
                actor,
                key,
            )
        if row is None:
            return None
        op = dict(row)
        return op.pop("request_hash"), op

    async def running_for(self, conn: asyncpg.Connection, tenant_id: str) -> dict[str, Any] | None:
        with translated("api running operation"):
            row = await conn.fetchrow(
                f"SELECT * FROM {self._ops} WHERE tenant_id = $1 AND NOT done", tenant_id
            )
        return dict(row) if row else None

    async def create(
        self,
        conn: asyncpg.Connection,
        op: NewOperation,
        *,
        key: str | None,
        request_hash: str,
        ttl_s: float,
    ) -> dict[str, Any]:
        """Insert the operation (and its key) in one transaction. Raises RunningOperation when the
        tenant has one in flight, KeyTaken when a concurrent request won the same key."""
        with translated("api create operation"):
            try:
                async with conn.transaction():
                    row = await conn.fetchrow(
                        f"INSERT INTO {self._ops} (operation_id, kind, tenant_id, actor, event_ids,"
                        " correlation_id) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                        op.operation_id,
                        op.kind,
                        op.tenant_id,
                        op.actor,
                        op.event_ids,
                        op.correlation_id,
                    )
                    if key is not None:
                        await conn.execute(
                            f"INSERT INTO {self._keys} (actor, key, request_hash, operation_id,"
                            " expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
                            op.actor,
                            key,
                            request_hash,
                            op.operation_id,
                            ttl_s,
                        )
                        # Expired keys of anyone are swept a few at a time, so the table stays small
                        # without a background job.
                        await conn.execute(
                            f"DELETE FROM {self._keys} WHERE ctid = ANY(ARRAY(SELECT ctid FROM"
                            f" {self._keys} WHERE expires_at < now() LIMIT 100))"
                        )
            except asyncpg.UniqueViolationError as e:
                if "api_operations_one_running" in str(e.constraint_name):
                    raise RunningOperation(op.tenant_id or "") from e
                raise KeyTaken(str(e)) from e
        assert row is not None
        return dict(row)

    async def finish(
        self,
        conn: asyncpg.Connection,
        operation_id: str,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        """Mark the operation done (once: a finished operation is never changed again)."""
        with translated("api finish operation"):
            row = await conn.fetchrow(
                f"UPDATE {self._ops} SET done = true, result = $2::jsonb, error = $3::jsonb,"
                " updated_at = now() WHERE operation_id = $1 AND NOT done RETURNING *",
                operation_id,
                None if result is None else json.dumps(result),
                None if error is None else json.dumps(error),
            )
        return dict(row) if row else None

    async def start_rollout(
        self, conn: asyncpg.Connection, rollout_id: str, target: int, max_failures: int
    ) -> None:
        """Record a rollout as ``tenantctl migrate`` does (its consumers look its status up)."""
        with translated("api start rollout"):
            await conn.execute(
                f"INSERT INTO {self._rollouts} (rollout_id, target_version, canary, max_failures)"
                " VALUES ($1, $2, 0, $3)",
                rollout_id,
                target,
                max_failures,
            )
