"""GET routes: tenants, their metrics, backups and timeline, and operations (read-only role)."""

import base64
import binascii
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from api.context import context, require
from api.operations import resource
from api.problems import Problem

router = APIRouter(prefix="/v1")

TENANT_ID = r"^[a-z][a-z0-9_]{2,39}$"
TenantId = Annotated[str, Path(pattern=TENANT_ID, description="The tenant id.")]
PageSize = Annotated[int, Query(ge=1, le=1000, description="Items per page (capped by settings).")]
PageToken = Annotated[
    str | None, Query(max_length=512, description="next_page_token of the previous page.")
]


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, default=str).encode()).decode()


def _untoken(token: str | None) -> Any:
    if token is None:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Problem(422, "invalid_page_token", "page_token is not one this API issued.") from None


def _page(request: Request, size: int) -> int:
    return min(size, context(request).settings.api_page_size_max)


async def _tenant_or_404(request: Request, tenant_id: str) -> dict[str, Any]:
    ctx = context(request)
    async with ctx.read_pool.acquire() as conn:
        row = await ctx.reads.tenant(conn, tenant_id)
    if row is None:
        raise Problem(404, "not_found", f"No tenant {tenant_id!r}.")
    return row


@router.get("/tenants", dependencies=[require("tenants:read")], tags=["tenants"])
async def list_tenants(
    request: Request,
    status: Literal["active", "suspended", "erased"] | None = None,
    plan: Annotated[str | None, Query(max_length=64)] = None,
    page_size: PageSize = 50,
    page_token: PageToken = None,
) -> dict[str, Any]:
    """Tenants by id, filtered by status and plan, a page at a time."""
    ctx, size = context(request), _page(request, page_size)
    after = _untoken(page_token)
    if after is not None and not isinstance(after, str):
        raise Problem(422, "invalid_page_token", "page_token is not one this API issued.")
    async with ctx.read_pool.acquire() as conn:
        rows = await ctx.reads.tenants(conn, after=after, limit=size, status=status, plan=plan)
    token = _token(rows[-1]["tenant_id"]) if len(rows) == size else None
    return {"tenants": rows, "next_page_token": token}


@router.get("/tenants/{tenant_id}", dependencies=[require("tenants:read")], tags=["tenants"])
async def get_tenant(request: Request, tenant_id: TenantId) -> dict[str, Any]:
    """One tenant's registry row."""
    return await _tenant_or_404(request, tenant_id)


@router.get(
    "/tenants/{tenant_id}/metrics", dependencies=[require("tenants:read")], tags=["tenants"]
)
async def tenant_metrics(
    request: Request, tenant_id: TenantId, page_size: PageSize = 50, page_token: PageToken = None
) -> dict[str, Any]:
    """The tenant's metrics history, newest first."""
    ctx, size = context(request), _page(request, page_size)
    await _tenant_or_404(request, tenant_id)
    before = _untoken(page_token)
    async with ctx.read_pool.acquire() as conn:
        try:
            rows = await ctx.reads.metrics(
                conn, tenant_id, before=str(before) if before else None, limit=size
            )
        except ValueError:
            raise Problem(
                422, "invalid_page_token", "page_token is not one this API issued."
            ) from None
    token = _token(rows[-1]["window_start"].isoformat()) if len(rows) == size else None
    return {"metrics": rows, "next_page_token": token}


@router.get(
    "/tenants/{tenant_id}/backups", dependencies=[require("tenants:read")], tags=["backups"]
)
async def tenant_backups(
    request: Request, tenant_id: TenantId, page_size: PageSize = 50, page_token: PageToken = None
) -> dict[str, Any]:
    """The tenant's catalogued backups, newest first."""
    ctx, size = context(request), _page(request, page_size)
    await _tenant_or_404(request, tenant_id)
    before = _untoken(page_token)
    async with ctx.read_pool.acquire() as conn:
        rows = await ctx.reads.backups(
            conn, tenant_id, before=str(before) if before else None, limit=size
        )
    token = _token(rows[-1]["backup_id"]) if len(rows) == size else None
    return {"backups": rows, "next_page_token": token}


@router.get("/tenants/{tenant_id}/events", dependencies=[require("tenants:read")], tags=["tenants"])
async def tenant_events(
    request: Request,
    tenant_id: TenantId,
    type: Annotated[list[str] | None, Query(max_length=20)] = None,  # noqa: A002
    page_size: PageSize = 50,
    page_token: PageToken = None,
) -> dict[str, Any]:
    """The tenant's timeline: its result events in the order they were stated."""
    ctx, size = context(request), _page(request, page_size)
    await _tenant_or_404(request, tenant_id)
    after = _untoken(page_token)
    if after is not None and not isinstance(after, int):
        raise Problem(422, "invalid_page_token", "page_token is not one this API issued.")
    async with ctx.read_pool.acquire() as conn:
        rows = await ctx.reads.timeline(conn, tenant_id, after=after, limit=size, types=type)
    token = _token(rows[-1][0]) if len(rows) == size else None
    return {"events": [event for _, event in rows], "next_page_token": token}


@router.get(
    "/operations/{operation_id}", dependencies=[require("tenants:read")], tags=["operations"]
)
async def get_operation(
    request: Request, operation_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
) -> dict[str, Any]:
    """An operation; ``done`` once its requests' result events are stated."""
    row = await context(request).operations.get(operation_id)
    if row is None:
        raise Problem(404, "not_found", f"No operation {operation_id!r}.")
    return resource(row)
