"""Commands become request events and operations; result events settle the operations.

Why the outbox, and not a consumer of tenants.events: a result's id is derived from its request's
id (``result_event_id``), and the outbox keeps every result with a unique index on that id. So an
operation's outcome is one indexed lookup of at most two ids per request, answered as soon as the
consumer's transaction commits (before the relay has even published it), with no consumer group,
offsets or lag of the API's own, and nothing to replay when an API process starts. The outbox is
the consumers' committed statement of the result; Kafka carries the same bytes.
"""

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import structlog

from adapters.kafka.producer import KafkaEventPublisher
from adapters.kafka.requests import publish_requests
from adapters.postgres.api_operations import (
    KeyTaken,
    NewOperation,
    PostgresOperations,
    RunningOperation,
)
from adapters.postgres.api_reads import PostgresApiReads
from api.auth import Principal
from api.problems import Problem
from contracts import codec
from contracts.envelope import Envelope, result_event_id
from contracts.events import Event
from domain.operations import RESULTS_OF, settle

log = structlog.get_logger(__name__)

API_SOURCE = "urn:tenant-service:api"
# CloudEvents extension naming who asked (the token's sub). Consumers accept and ignore
# extensions, so events with it are readable by every existing consumer.
ACTOR_EXTENSION = "actor"


def with_actor(envelope: Envelope, actor: str) -> Envelope:
    return Envelope.model_validate({**envelope.model_dump(), ACTOR_EXTENSION: actor})


def resource(row: dict[str, Any]) -> dict[str, Any]:
    """The AIP-151 operation resource of a row."""
    out: dict[str, Any] = {
        "name": f"operations/{row['operation_id']}",
        "done": row["done"],
        "event_id": row["event_ids"][0] if row["event_ids"] else None,
        "correlation_id": row["correlation_id"],
        "metadata": {
            "kind": row["kind"],
            "tenant_id": row["tenant_id"],
            "actor": row["actor"],
            "event_ids": list(row["event_ids"]),
            "create_time": row["created_at"].isoformat(),
            "update_time": row["updated_at"].isoformat(),
        },
    }
    if row["done"]:
        if row["error"] is not None:
            out["error"] = _json(row["error"])
        else:
            out["result"] = _json(row["result"])
    return out


class OperationService:
    def __init__(
        self,
        *,
        read_pool: asyncpg.Pool,
        write_pool: asyncpg.Pool,
        reads: PostgresApiReads,
        operations: PostgresOperations,
        publisher: KafkaEventPublisher,
        key_ttl_s: float,
    ) -> None:
        self._read, self._write = read_pool, write_pool
        self._reads, self._ops = reads, operations
        self._publisher = publisher
        self._ttl = key_ttl_s

    async def start_rollout(
        self, conn: asyncpg.Connection, rollout_id: str, target: int, max_failures: int
    ) -> None:
        await self._ops.start_rollout(conn, rollout_id, target, max_failures)

    async def get(self, operation_id: str) -> dict[str, Any] | None:
        async with self._read.acquire() as conn:
            row = await self._reads.operation(conn, operation_id)
        return None if row is None else await self.refresh(row)

    async def refresh(self, row: dict[str, Any]) -> dict[str, Any]:
        """Settle a running operation if all its results are in the outbox."""
        if row["done"]:
            return row
        success, failure = RESULTS_OF[row["kind"]]
        ids = {result_event_id(e, t): e for e in row["event_ids"] for t in (success, failure)}
        async with self._read.acquire() as conn:
            results = await self._reads.results(conn, list(ids))
        answers = {r["causationid"]: (r["type"], r["data"]) for r in results}
        settled = settle(list(row["event_ids"]), answers)
        if settled is None:
            return row
        async with self._write.acquire() as conn:
            done = await self._ops.finish(conn, row["operation_id"], settled.result, settled.error)
        if done is None:  # another request settled it first
            async with self._read.acquire() as conn:
                done = await self._reads.operation(conn, row["operation_id"])
        assert done is not None
        log.info("operation_done", operation=row["operation_id"], failed=bool(settled.error))
        return done

    async def submit(
        self,
        principal: Principal,
        tenant_id: str | None,
        events: Sequence[Event],
        *,
        key: str | None,
        fingerprint: str,
        before_publish: Callable[[asyncpg.Connection, list[Envelope]], Any] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """(operation row, created). Raises Problem 409 on a conflict or a reused key."""
        for _ in range(3):
            if key is not None:
                async with self._write.acquire() as conn:
                    found = await self._ops.by_key(conn, principal.sub, key)
                if found is not None:
                    stored_hash, row = found
                    if stored_hash != fingerprint:
                        raise Problem(
                            422,
                            "idempotency_key_reused",
                            "This Idempotency-Key was used with a different request.",
                        )
                    return await self.refresh(row), False
            if tenant_id is not None:
                await self._check_idle(tenant_id)
            try:
                return await self._create(
                    principal, tenant_id, events, key, fingerprint, before_publish
                ), True
            except KeyTaken:
                continue  # a concurrent twin won the key: answer its operation
            except RunningOperation:
                await self._check_idle(tenant_id or "")
        raise Problem(409, "conflict", "The request raced with another; try again.")

    async def _check_idle(self, tenant_id: str) -> None:
        async with self._write.acquire() as conn:
            running = await self._ops.running_for(conn, tenant_id)
        if running is not None and not (await self.refresh(running))["done"]:
            name = f"operations/{running['operation_id']}"
            raise Problem(
                409,
                "operation_running",
                f"Tenant {tenant_id!r} has an operation running: {name}.",
                operation=name,
            )

    async def _create(
        self,
        principal: Principal,
        tenant_id: str | None,
        events: Sequence[Event],
        key: str | None,
        fingerprint: str,
        before_publish: Callable[[asyncpg.Connection, list[Envelope]], Any] | None,
    ) -> dict[str, Any]:
        first = codec.envelope_for(events[0], source=API_SOURCE)
        envelopes = [first] + [
            codec.envelope_for(e, source=API_SOURCE, correlation_id=first.id) for e in events[1:]
        ]
        envelopes = [with_actor(e, principal.sub) for e in envelopes]
        op = NewOperation(
            operation_id=uuid.uuid4().hex,
            kind=first.type,
            tenant_id=tenant_id,
            actor=principal.sub,
            event_ids=[e.id for e in envelopes],
            correlation_id=first.correlationid,
        )
        async with self._write.acquire() as conn:
            row = await self._ops.create(
                conn, op, key=key, request_hash=fingerprint, ttl_s=self._ttl
            )
            if before_publish is not None:
                await before_publish(conn, envelopes)
        try:
            await publish_requests(self._publisher, envelopes)
        except Exception as e:
            # Nothing was published (or not all): the operation ends here, so it neither blocks
            # the tenant nor claims work that never started. The client may retry.
            error = {"code": "unavailable", "message": f"publish failed: {type(e).__name__}"}
            async with self._write.acquire() as conn:
                await self._ops.finish(conn, op.operation_id, None, error)
            log.warning("operation_publish_failed", operation=op.operation_id, error=repr(e))
            raise Problem(503, "unavailable", "Kafka did not take the request; retry later.") from e
        log.info(
            "operation_started",
            operation=op.operation_id,
            kind=op.kind,
            tenant=tenant_id,
            actor=principal.sub,
            event_id=first.id,
            requests=len(envelopes),
        )
        return row


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
