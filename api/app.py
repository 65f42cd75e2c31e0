"""The FastAPI application: routes, problem+json errors, a body-size guard and access logs."""

import asyncio
import time
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import console, problems, routes_commands, routes_reads
from api.context import ApiContext, context
from api.jwks import KeysUnavailable

log = structlog.get_logger("api")

TITLE = "Tenant Service API"
VERSION = "1.0.0"


class BodyLimit:
    """Refuse bodies over ``max_bytes`` with 413 before a route sees them: by Content-Length
    when it is declared, else by reading the chunks (at most ``max_bytes`` are ever held) and
    handing them on only once the whole body fits. A route's own body parser would turn an
    error raised mid-read into a generic 400."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        if declared is not None:  # the server enforces a declared length
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            buffered.append(message)
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem_response(
            413, "payload_too_large", f"The body may be at most {self.max_bytes} bytes."
        )
        await response(scope, receive, send)


def create_app(ctx: ApiContext | None, max_body_bytes: int = 16_384) -> FastAPI:
    """The app; ``ctx`` None builds it for the OpenAPI document only."""
    app = FastAPI(
        title=TITLE,
        version=VERSION,
        summary="Tenants, operations, backups and migrations of the Tenant Service.",
        description=(
            "Commands publish the same request events as tenantctl and answer 202 with an "
            "operation (AIP-151) that is done once the request's result event is stated. Errors "
            "are application/problem+json (RFC 9457)."
        ),
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    problems.install(app)
    app.include_router(routes_reads.router, responses=problems.RESPONSES)
    app.include_router(routes_commands.router, responses=problems.RESPONSES)
    app.include_router(console.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "a dependency is down"}})
    async def readyz(request: Request) -> JSONResponse:
        """Ready when its read pool, Kafka and Redis answer (and, with a JWKS URL, once it has keys)."""
        checks = await _readiness(context(request))
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.middleware("http")
    async def access_log(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        principal = getattr(request.state, "principal", None)
        if request.url.path not in ("/healthz", "/readyz"):
            log.info(
                "api_request",
                method=request.method,
                path=request.url.path,
                status=response.status_code,
                actor=principal.sub if principal else None,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
        return response

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


async def _readiness(ctx: ApiContext) -> dict[str, str]:
    timeout = ctx.settings.readiness_timeout_s

    async def postgres() -> None:
        async with ctx.read_pool.acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1")

    async def check(name: str, probe: Any) -> tuple[str, str]:
        try:
            await asyncio.wait_for(probe(), timeout)
            return name, "ok"
        except Exception as e:
            return name, f"error: {type(e).__name__}"

    probes = {"postgres": postgres, "kafka": ctx.publisher.ping, "redis": ctx.redis.ping}
    remote = ctx.verifier.remote
    if remote is not None:

        async def jwks() -> None:
            if not await remote.ensure():
                raise KeysUnavailable("no key set from the JWKS URL yet")

        probes["jwks"] = jwks
    return dict(await asyncio.gather(*(check(n, p) for n, p in probes.items())))
