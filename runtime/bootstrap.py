"""The shared resources of a worker process, built once, and the parts a role hands back.

``build_resources`` opens what every role shares (the pool, the control schema, the topics, the
Kafka publisher and FastStream broker, Redis, the outbox adapter) into one frozen value. A role
builder (runtime/roles.py) takes that value and returns its ``RoleParts``; it changes nothing it
was given. The worker (runtime/worker.py) only assembles and runs what the builders return.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import redis.asyncio as aioredis
import structlog
from faststream.kafka import KafkaBroker

from adapters.kafka.producer import KafkaEventPublisher
from adapters.kafka.topics import ensure_topics
from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.errors import translated
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.pool import create_pool
from consumers.delivery import Delivery
from domain.errors import TransientError
from runtime.settings import Settings

log = structlog.get_logger(__name__)

Closer = Callable[[], Awaitable[None]]
Check = Callable[[], Awaitable[None]]  # a readiness probe: raises while not ready


class Background(Protocol):
    """A loop the worker runs beside its consumers; stop() asks it to finish its current step."""

    async def run(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class RoleParts:
    """What one role adds to the worker: consumer deliveries (registered on the shared broker),
    loops to run beside them, and what to close after they have stopped."""

    deliveries: tuple[Delivery, ...] = ()
    background: tuple[Background, ...] = ()
    closers: tuple[Closer, ...] = ()


@dataclass(frozen=True)
class Resources:
    """What every role shares; one per process."""

    settings: Settings
    pool: asyncpg.Pool
    publisher: KafkaEventPublisher
    broker: KafkaBroker
    redis: aioredis.Redis
    outbox: PostgresOutbox
    checks: Mapping[str, Check] = field(default_factory=dict)  # readiness, by dependency


async def build_resources(settings: Settings, closers: list[Closer]) -> Resources:
    """Open the shared resources, waiting (bounded) for dependencies still coming up.

    Each resource's close is appended to ``closers`` as soon as it is open, so a start-up that
    fails half way still releases what it opened.
    """
    s = settings
    pool = await _until_ready("postgres", lambda: create_pool(s.pg_pool), s.startup_timeout_s)
    closers.append(pool.close)

    async def control_schema() -> None:  # PostgreSQL may go away again right after the pool
        with translated("control schema"):
            async with pool.acquire() as conn:
                await ensure_control_schema(
                    conn, s.names.control_schema, s.names.app_role,
                    api_reader_role=s.names.api_reader_role,
                )  # fmt: skip

    await _until_ready("postgres", control_schema, s.startup_timeout_s)
    await _until_ready("kafka", lambda: ensure_topics(s.kafka), s.startup_timeout_s)
    publisher = KafkaEventPublisher(s.kafka)
    await _until_ready("kafka producer", publisher.start, s.startup_timeout_s)
    closers.append(publisher.stop)
    redis = aioredis.from_url(s.redis_url.get_secret_value())
    closers.append(redis.aclose)
    broker = KafkaBroker(
        s.kafka_bootstrap,
        graceful_timeout=s.shutdown_grace_s,
        allow_auto_create_topics=False,  # ensure_topics made them with our partition count
        # FastStream installs its own plain-text handler on "faststream"; ours is JSON.
        logger=logging.getLogger("tenant_service.faststream"),
        request_timeout_ms=s.kafka_request_timeout_ms,
        # FastStream's per-message "Received"/"Processed" lines at DEBUG: Delivery logs each
        # record once, with its ids, at INFO.
        log_level=logging.DEBUG,
    )

    async def postgres() -> None:
        async with pool.acquire(timeout=s.readiness_timeout_s) as conn:
            await conn.fetchval("SELECT 1")

    return Resources(
        settings=s,
        pool=pool,
        publisher=publisher,
        broker=broker,
        redis=redis,
        outbox=PostgresOutbox(s.names.control_schema, s.result_content_mode),
        checks={"postgres": postgres, "kafka": publisher.ping, "redis": _pinger(redis)},
    )


def _pinger(redis: aioredis.Redis) -> Check:
    async def ping() -> None:
        await redis.ping()

    return ping


async def _until_ready(what: str, attempt: Callable[[], Awaitable[Any]], limit_s: float) -> Any:
    """Start-up waits for dependencies that are still coming up, with backoff, then gives up."""
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + limit_s, 0.5
    while True:
        try:
            return await attempt()
        except (TransientError, OSError, asyncpg.PostgresConnectionError) as e:
            if loop.time() > deadline:
                raise SystemExit(f"{what} not reachable after {limit_s:.0f}s: {e}") from e
            log.warning("waiting_for_dependency", dependency=what, error=str(e))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
