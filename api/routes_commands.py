"""POST routes: each publishes the request events tenantctl publishes and answers 202 with an
operation. The API never touches a tenant schema: Kafka stays the only way in."""

import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters.trace_context import request_span
from api.auth import Principal
from api.context import context, require
from api.operations import resource
from api.problems import Problem
from api.routes_reads import TENANT_ID, TenantId
from contracts.envelope import Envelope
from contracts.events import (
    BackupDue,
    Event,
    RestoreRequested,
    TenantDeactivated,
    TenantEraseRequested,
    TenantMigrationDue,
    TenantReactivated,
    TenantRequested,
)
from domain.migrations import plan_migrations, rollout_id_for
from domain.operations import request_hash

router = APIRouter(prefix="/v1")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Same key and body: the same operation (kept at least 24 h).",
    ),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text and jsonb cannot hold NUL: refuse it here, as a 422, not a 500 later.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("NUL characters are not allowed")
        return value


class CreateTenant(Body):
    tenant_id: str = Field(pattern=TENANT_ID)
    plan: str | None = Field(default=None, min_length=1, max_length=64)
    display_name: str | None = Field(default=None, max_length=200)


class Suspend(Body):
    reason: str | None = Field(default=None, max_length=200)


class Erase(Body):
    archive: bool = False


class Restore(Body):
    backup_id: str = Field(default="latest", min_length=1, max_length=128)


class Migrate(Body):
    target_version: int | None = Field(default=None, ge=1)
    max_failures: int = Field(default=0, ge=0)


async def _submit(
    request: Request,
    response: Response,
    principal: Principal,
    tenant_id: str | None,
    events: list[Event],
    key: str | None,
    body: BaseModel | None,
    before_publish: Any = None,
) -> dict[str, Any]:
    fingerprint = request_hash(
        request.method, request.url.path, body.model_dump(mode="json") if body else None
    )
    # One span per command, continuing the caller's W3C context (a new trace without one):
    # the request events carry it, so the consumers and the results join the caller's trace.
    attributes = {"http.request.method": request.method, "url.path": request.url.path,
                  "enduser.id": principal.sub}
    with request_span(f"command {type(events[0]).__name__}", request.headers.get("traceparent"),
                      request.headers.get("tracestate"), attributes):
        row, created = await context(request).operations.submit(
            principal,
            tenant_id,
            events,
            key=key,
            fingerprint=fingerprint,
            before_publish=before_publish,
        )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/operations/{row['operation_id']}"
    return resource(row)


_202 = {"status_code": 202, "tags": ["commands"]}


@router.post("/tenants", **_202)
async def create_tenant(
    request: Request,
    response: Response,
    principal: Annotated[Principal, require("tenants:write")],
    body: CreateTenant,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Provision a tenant (TenantRequested)."""
    plan = body.plan or context(request).settings.default_plan
    event = TenantRequested(tenant_id=body.tenant_id, plan=plan, display_name=body.display_name)
    return await _submit(
        request, response, principal, body.tenant_id, [event], idempotency_key, body
    )


@router.post("/tenants/{tenant_id}:suspend", **_202)
async def suspend_tenant(
    request: Request,
    response: Response,
    principal: Annotated[Principal, require("tenants:write")],
    tenant_id: TenantId,
    body: Suspend | None = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Suspend a tenant (TenantDeactivated): access revoked, data kept."""
    event = TenantDeactivated(tenant_id=tenant_id, reason=body.reason if body else None)
    return await _submit(request, response, principal, tenant_id, [event], idempotency_key, body)


@router.post("/tenants/{tenant_id}:resume", **_202)
async def resume_tenant(
    request: Request,
    response: Response,
    principal: Annotated[Principal, require("tenants:write")],
    tenant_id: TenantId,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Resume a suspended tenant (TenantReactivated)."""
    event = TenantReactivated(tenant_id=tenant_id)
    return await _submit(request, response, principal, tenant_id, [event], idempotency_key, None)


@router.post("/tenants/{tenant_id}:erase", **_202)
async def erase_tenant(
    request: Request,
    response: Response,
    principal: Annotated[Principal, require("tenants:erase")],
    tenant_id: TenantId,
    body: Erase | None = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Erase a tenant for good (TenantEraseRequested)."""
    event = TenantEraseRequested(tenant_id=tenant_id, archive=body.archive if body else False)
    return await _submit(request, response, principal, tenant_id, [event], idempotency_key, body)


@router.post("/tenants/{tenant_id}:backup", **_202)
async def backup_tenant(
    request: Request,
    response: Response,
    principal: Annotated[Principal, require("backups:write")],
    tenant_id: TenantId,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Back a tenant up now (BackupDue, manual)."""
    event = BackupDue(tenant_id=tenant_id, trigger="manual")
    return await _submit(request, response, principal, tenant_id, [event], idempotency_key, None)


@router.post("/tenants/{tenant_id}:restore", **_202)
async def restore_tenant(
    request: Request,
    response: Response,
    principal: Annotated[Principal, require("backups:restore")],
    tenant_id: TenantId,
    body: Restore | None = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Restore a tenant from a backup (RestoreRequested; latest by default)."""
    event = RestoreRequested(tenant_id=tenant_id, backup_id=body.backup_id if body else "latest")
    return await _submit(request, response, principal, tenant_id, [event], idempotency_key, body)


@router.post("/migrations", **_202)
async def migrate(
    request: Request,
    response: Response,
    principal: Annotated[Principal, require("migrations:write")],
    body: Migrate | None = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Roll the tenant schema out to a version (TenantMigrationDue per tenant below it)."""
    ctx, body = context(request), body or Migrate()
    try:
        goal = plan_migrations(ctx.migrations, 0, body.target_version).target
    except ValueError as e:
        raise Problem(422, "invalid_target_version", str(e)) from None
    async with ctx.read_pool.acquire() as conn:
        tenants = await ctx.reads.below_version(conn, goal)
    if not tenants:
        raise Problem(409, "nothing_to_migrate", f"Every tenant is at version {goal} or later.")
    rollout_id = rollout_id_for(goal, uuid.uuid4().hex)
    events: list[Event] = [
        TenantMigrationDue(tenant_id=t, target_version=goal, rollout_id=rollout_id) for t in tenants
    ]

    async def record_rollout(conn: asyncpg.Connection, _: list[Envelope]) -> None:
        await ctx.operations.start_rollout(conn, rollout_id, goal, body.max_failures)

    return await _submit(
        request, response, principal, None, events, idempotency_key, body, record_rollout
    )
