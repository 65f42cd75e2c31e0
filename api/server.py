"""The API's server: the FastAPI app on uvicorn, inside the worker's event loop (the ``api`` role,
runtime/roles_api.py, builds it), its read-only pool and its token verifier."""

import contextlib
from collections.abc import Iterator
from typing import Any

import asyncpg
import jwt
import structlog
import uvicorn

from api.auth import TokenVerifier
from api.jwks import JwksCache, http_fetcher
from runtime.settings import Settings, SettingsError

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    # The worker owns SIGTERM/SIGINT and stops every role in order; uvicorn must not take them.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """Serves until stop(); in-flight requests finish, new connections are refused."""

    def __init__(self, app: Any, host: str, port: int, grace_s: float) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,  # the app logs each request with its actor
            lifespan="off",
            timeout_graceful_shutdown=int(grace_s),
            server_header=False,
        )
        self._server = _Server(config)

    async def run(self) -> None:
        await self._server.serve()

    def stop(self) -> None:
        self._server.should_exit = True


async def create_read_pool(settings: Settings) -> asyncpg.Pool:
    """Sessions that run as the read-only role, in read-only transactions. Both are startup
    parameters, so they are the session's defaults: a pool reset (RESET ALL) keeps them."""
    pool = await asyncpg.create_pool(
        settings.pg_dsn.get_secret_value(),
        min_size=1,
        max_size=min(10, settings.pg_pool_max),
        command_timeout=settings.pg_statement_timeout_ms / 1000 + 5,
        server_settings={
            "application_name": "tenant-service-api",
            "role": settings.names.api_reader_role,
            "default_transaction_read_only": "on",
            "statement_timeout": str(settings.pg_statement_timeout_ms),
        },
    )
    assert pool is not None
    return pool


def build_verifier(settings: Settings) -> TokenVerifier:
    """The token verifier of the settings; no key source at all stops start-up (an API that
    refuses every token is a misconfiguration, better named now than found by its clients)."""
    if (
        settings.api_jwks_file is None
        and settings.api_jwks_url is None
        and not settings.api_dev_hs256
    ):
        raise SettingsError(
            "invalid settings:\n  TENANT_API_JWKS_FILE / TENANT_API_JWKS_URL: the api role needs"
            " one to verify tokens (a development key: tenantctl token --sub me --scope"
            " tenants:read prints the JWKS file to use)"
        )
    if settings.api_dev_hs256 and settings.api_hs256_secret is None:
        raise SettingsError("invalid settings:\n  TENANT_API_HS256_SECRET: needed by the flag")
    jwks = None
    if settings.api_jwks_file is not None:
        try:
            jwks = TokenVerifier.load_jwks(settings.api_jwks_file)
        except (OSError, ValueError, jwt.PyJWTError) as e:
            raise SettingsError(
                f"invalid settings:\n  TENANT_API_JWKS_FILE: not a readable JWKS: {e}"
            ) from None
    remote = None
    if settings.api_jwks_url is not None:
        remote = JwksCache(
            http_fetcher(settings.api_jwks_url, settings.api_jwks_fetch_timeout_s),
            ttl_s=settings.api_jwks_ttl_s,
            min_refresh_s=settings.api_jwks_min_refresh_s,
        )
    secret = settings.api_hs256_secret
    return TokenVerifier(
        jwks=jwks,
        hs256_secret=secret.get_secret_value() if secret and settings.api_dev_hs256 else None,
        audience=settings.api_jwt_audience,
        issuer=settings.api_jwt_issuer,
        remote=remote,
    )
