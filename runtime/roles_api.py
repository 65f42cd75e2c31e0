"""Role ``api``: the HTTP API on the worker's shared pool, publisher and Redis, with a read-only
pool of its own."""

import structlog

from adapters.migration_files import load_migrations
from adapters.postgres.api_operations import PostgresOperations
from adapters.postgres.api_reads import PostgresApiReads
from api.app import create_app
from api.context import ApiContext
from api.operations import OperationService
from api.ratelimit import Limit, RedisRateLimiter
from api.server import ApiServer, build_verifier, create_read_pool
from migrations import TENANT_DIR
from runtime.bootstrap import Resources, RoleParts

log = structlog.get_logger(__name__)


async def api_role(res: Resources) -> RoleParts:
    s = res.settings
    verifier = build_verifier(s)
    if verifier.remote is not None and not await verifier.remote.ensure():
        # Start anyway: the issuer may come back, and the keys are fetched again then. Until
        # they are, /readyz answers 503 (so no traffic is routed here) and tokens get 401.
        log.warning("api_jwks_unavailable", url=s.api_jwks_url)
    read_pool = await create_read_pool(s)
    reads = PostgresApiReads(s.names.control_schema)
    ctx = ApiContext(
        settings=s,
        read_pool=read_pool,
        reads=reads,
        operations=OperationService(
            read_pool=read_pool,
            write_pool=res.pool,
            reads=reads,
            operations=PostgresOperations(s.names.control_schema),
            publisher=res.publisher,
            key_ttl_s=s.api_idempotency_ttl_s,
            publish_timeout_s=s.api_publish_timeout_s,
        ),
        publisher=res.publisher,
        redis=res.redis,
        verifier=verifier,
        limiter=RedisRateLimiter(res.redis, s.names.api_ratelimit_prefix),
        read_limit=Limit.parse(s.api_rate_limit_read),
        write_limit=Limit.parse(s.api_rate_limit_write),
        migrations=load_migrations(TENANT_DIR),
    )
    app = create_app(ctx, s.api_max_body_bytes)
    log.info("api_listening", host=s.api_host, port=s.api_port)
    return RoleParts(
        background=(ApiServer(app, s.api_host, s.api_port, s.shutdown_grace_s),),
        closers=(read_pool.close,),
    )
