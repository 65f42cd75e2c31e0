"""In-memory stand-ins for the API's adapters, so its policies run in milliseconds."""

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from adapters.postgres.api_operations import KeyTaken, NewOperation, RunningOperation
from api.auth import TokenVerifier
from api.context import ApiContext
from api.operations import OperationService
from api.ratelimit import Decision, Limit
from runtime.settings import Settings

SECRET = "unit-test-secret-0123456789abcdef"


class FakePool:
    @contextlib.asynccontextmanager
    async def acquire(self, timeout: float | None = None) -> AsyncIterator[object]:
        yield object()


class FakeOperations:
    """Mirrors PostgresOperations: one running operation per tenant, keys per actor."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.keys: dict[tuple[str, str], tuple[str, str]] = {}

    async def by_key(self, conn: object, actor: str, key: str) -> Any:
        found = self.keys.get((actor, key))
        return None if found is None else (found[0], self.rows[found[1]])

    async def running_for(self, conn: object, tenant_id: str) -> Any:
        return next(
            (r for r in self.rows.values() if r["tenant_id"] == tenant_id and not r["done"]), None
        )

    async def create(
        self, conn: object, op: NewOperation, *, key: str | None, request_hash: str, ttl_s: float
    ) -> Any:
        if op.tenant_id and await self.running_for(conn, op.tenant_id):
            raise RunningOperation(op.tenant_id)
        if key is not None and (op.actor, key) in self.keys:
            raise KeyTaken(key)
        now = dt.datetime.now(dt.UTC)
        row = {
            **op.__dict__,
            "done": False,
            "result": None,
            "error": None,
            "created_at": now,
            "updated_at": now,
        }
        self.rows[op.operation_id] = row
        if key is not None:
            self.keys[(op.actor, key)] = (request_hash, op.operation_id)
        return row

    async def finish(self, conn: object, operation_id: str, result: Any, error: Any) -> Any:
        row = self.rows[operation_id]
        if row["done"]:
            return None
        row.update(done=True, result=result, error=error)
        return row

    async def start_rollout(self, *args: Any) -> None:
        pass


class FakeReads:
    def __init__(self, ops: FakeOperations) -> None:
        self.ops = ops
        self.results_by_id: dict[str, dict[str, Any]] = {}

    async def results(self, conn: object, ids: list[str]) -> list[dict[str, Any]]:
        return [self.results_by_id[i] for i in ids if i in self.results_by_id]

    async def operation(self, conn: object, operation_id: str) -> Any:
        return self.ops.rows.get(operation_id)

    async def tenant(self, conn: object, tenant_id: str) -> Any:
        return None

    async def tenants(self, conn: object, **kwargs: Any) -> list[dict[str, Any]]:
        return []


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, Any]] = []

    async def publish_many(self, messages: Any) -> None:
        self.sent += list(messages)

    async def ping(self) -> None:
        pass


class FakeLimiter:
    """Allows ``allow`` requests per (client, route), then refuses."""

    def __init__(self, allow: int = 1000) -> None:
        self.allow = allow
        self.counts: dict[tuple[str, str], int] = {}

    async def check(self, client: str, route: str, limit: Limit) -> Decision:
        n = self.counts[(client, route)] = self.counts.get((client, route), 0) + 1
        ok = n <= self.allow
        return Decision(ok, limit, remaining=max(0, self.allow - n), retry_after_s=7, reset_s=7)


def fake_context(
    limiter: FakeLimiter | None = None,
) -> tuple[ApiContext, FakeOperations, FakeReads, FakePublisher]:
    settings = Settings(pg_dsn="postgresql://u:p@127.0.0.1:1/db")  # type: ignore[arg-type]
    ops, publisher = FakeOperations(), FakePublisher()
    reads = FakeReads(ops)
    service = OperationService(
        read_pool=FakePool(),  # type: ignore[arg-type]
        write_pool=FakePool(),  # type: ignore[arg-type]
        reads=reads,  # type: ignore[arg-type]
        operations=ops,  # type: ignore[arg-type]
        publisher=publisher,  # type: ignore[arg-type]
        key_ttl_s=86_400,
    )
    ctx = ApiContext(
        settings=settings,
        read_pool=FakePool(),  # type: ignore[arg-type]
        reads=reads,  # type: ignore[arg-type]
        operations=service,
        publisher=publisher,  # type: ignore[arg-type]
        redis=None,
        verifier=TokenVerifier(
            jwks=None, hs256_secret=SECRET, audience="tenant-service", issuer=None
        ),
        limiter=limiter or FakeLimiter(),  # type: ignore[arg-type]
        read_limit=Limit(1000, 60),
        write_limit=Limit(1000, 60),
        migrations=[],
    )
    return ctx, ops, reads, publisher
