"""The API's resources, built once by the ``api`` role and reached by routes through the app."""

from dataclasses import dataclass
from typing import Any

import asyncpg
from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters.kafka.producer import KafkaEventPublisher
from adapters.postgres.api_reads import PostgresApiReads
from api.auth import InvalidToken, Principal, TokenVerifier
from api.operations import OperationService
from api.problems import Problem
from api.ratelimit import Limit, RedisRateLimiter
from domain.migrations import Migration
from runtime.settings import Settings


@dataclass
class ApiContext:
    settings: Settings
    read_pool: asyncpg.Pool
    reads: PostgresApiReads
    operations: OperationService
    publisher: KafkaEventPublisher
    redis: Any
    verifier: TokenVerifier
    limiter: RedisRateLimiter
    read_limit: Limit
    write_limit: Limit
    migrations: list[Migration]


def context(request: Request) -> ApiContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, ApiContext), "the API was built without its context"
    return ctx


_bearer = HTTPBearer(auto_error=False, description="A JWT with the route's scope.")


def require(scope: str) -> Any:
    """Dependency of a route: a valid bearer token with ``scope``, within the client's rate
    limit for this route. Its Principal is the route's caller."""

    async def dependency(
        request: Request,
        response: Response,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal:
        ctx = context(request)
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Problem(
                401,
                "unauthenticated",
                "A bearer token is required.",
                headers={"WWW-Authenticate": 'Bearer realm="tenant-service"'},
            )
        try:
            principal = await ctx.verifier.authenticate(credentials.credentials)
        except InvalidToken as e:
            raise Problem(
                401,
                "invalid_token",
                f"The bearer token was refused: {e}.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
        request.state.principal = principal
        if scope not in principal.scopes:
            raise Problem(
                403,
                "insufficient_scope",
                f"This route needs the scope {scope}.",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
                required_scope=scope,
            )
        route = getattr(request.scope.get("route"), "path", request.url.path)
        limit = ctx.read_limit if request.method == "GET" else ctx.write_limit
        decision = await ctx.limiter.check(principal.sub, f"{request.method} {route}", limit)
        if not decision.allowed:
            raise Problem(
                429,
                "rate_limited",
                f"More than {limit.count} requests in {limit.period_s}s on this route.",
                headers=decision.headers(),
            )
        response.headers.update(decision.headers())
        return principal

    return Depends(dependency)
