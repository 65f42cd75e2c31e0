"""The composition root of a worker process: builds every adapter once, wires the roles asked
for, serves health and metrics, and stops gracefully on SIGTERM."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import structlog
from faststream.kafka import KafkaBroker

from adapters.kafka.dead_letters import KafkaDeadLetters
from adapters.kafka.producer import KafkaEventPublisher
from adapters.kafka.topics import ensure_topics
from adapters.migration_files import load_migrations
from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.inbox import PostgresInbox
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.pool import create_pool
from adapters.postgres.tenant_store import PostgresTenantStore
from consumers import backups, provisioner
from runtime.backup_wiring import build_backup_parts
from service.backups import BackupRequests
from service.job_runner import JobRunner
from contracts import topics
from domain.errors import TransientError
from migrations import TENANT_DIR
from producers.outbox_relay import OutboxRelay
from runtime.http import HealthServer
from runtime.lag import watch_lag
from runtime.settings import Settings
from service.event_transaction import EventTransaction
from service.provisioning import ProvisioningService

log = structlog.get_logger(__name__)

ROLES = ("provisioner", "relay", "backup")
STARTUP_TIMEOUT_S = 60.0


def expand_roles(names: list[str]) -> list[str]:
    roles = list(ROLES) if "all" in names else list(dict.fromkeys(names))
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise SystemExit(f"unknown worker role(s) {unknown}; choose from {', '.join(ROLES)} or all")
    return roles


async def _until_ready(what: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
    """Start-up waits for dependencies that are still coming up, with backoff, then gives up."""
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + STARTUP_TIMEOUT_S, 0.5
    while True:
        try:
            return await attempt()
        except (TransientError, OSError, asyncpg.PostgresConnectionError) as e:
            if loop.time() > deadline:
                raise SystemExit(f"{what} not reachable after {STARTUP_TIMEOUT_S:.0f}s: {e}") from e
            log.warning("waiting_for_dependency", dependency=what, error=str(e))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class Worker:
    def __init__(self, settings: Settings, roles: list[str]) -> None:
        self.settings = settings
        self.roles = roles
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        self.pool = await _until_ready("postgres", lambda: create_pool(s))
        async with self.pool.acquire() as conn:
            await ensure_control_schema(conn, s.control_schema, s.app_role)
        await _until_ready("kafka", lambda: ensure_topics(s))
        self.publisher = KafkaEventPublisher(s)
        await _until_ready("kafka producer", self.publisher.start)
        self.redis = aioredis.from_url(s.redis_url.get_secret_value())
        self.outbox = PostgresOutbox(s.control_schema)

        self.broker = KafkaBroker(
            s.kafka_bootstrap,
            graceful_timeout=s.shutdown_grace_s,
            allow_auto_create_topics=False,  # ensure_topics made them with our partition count
            logger=logging.getLogger("faststream"),
            request_timeout_ms=s.kafka_request_timeout_ms,
        )
        if "provisioner" in self.roles:
            service = ProvisioningService(
                EventTransaction(self.pool, PostgresInbox(s.control_schema), self.outbox,
                                 provisioner.GROUP),
                PostgresTenantStore(s.control_schema, s.app_role),
                load_migrations(TENANT_DIR),
                plans=s.plans,
                max_tenants=s.max_tenants,
                source=s.source,
            )
            provisioner.register(self.broker, s, service, KafkaDeadLetters(self.publisher))
        self.runner: JobRunner | None = None
        if "backup" in self.roles:
            self.runner = await self._backup_role(KafkaDeadLetters(self.publisher))
            self._tasks.append(asyncio.create_task(self.runner.run()))
        await self.broker.start()
        subscribers = [(sub.group_id, sub) for sub in self.broker.subscribers]
        self._tasks.append(asyncio.create_task(watch_lag(subscribers, 5.0)))

        self.relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        if "relay" in self.roles:
            self.relay = OutboxRelay(s, self.pool, self.outbox, self.publisher)
            self._relay_task = asyncio.create_task(self.relay.run())
            self._tasks.append(self._relay_task)

        self.http = HealthServer(
            s.http_host,
            s.http_port,
            {"postgres": self._probe_postgres, "kafka": self._probe_kafka, "redis": self._probe_redis},
        )
        await self.http.start()
        log.info("worker_started", roles=self.roles)

    async def _backup_role(self, dead_letters: KafkaDeadLetters) -> JobRunner:
        s = self.settings
        parts = await build_backup_parts(s, self.pool)
        self.target = parts.target
        requests = BackupRequests(
            EventTransaction(self.pool, PostgresInbox(s.control_schema), self.outbox,
                             backups.GROUP),
            parts.store, parts.jobs, s.source,
        )
        backups.register(self.broker, s, requests, dead_letters)
        return JobRunner(
            pool=self.pool, jobs=parts.jobs, outbox=self.outbox, store=parts.store,
            taker=parts.taker, restorer=parts.restorer, lease_s=s.backup_lease_s,
            poll_s=s.backup_poll_interval_s, max_attempts=s.backup_max_attempts,
            retry_base_s=s.backup_retry_base_s, retry_max_s=s.backup_retry_max_s, source=s.source,
        )

    async def _probe_postgres(self) -> None:
        async with self.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")

    async def _probe_kafka(self) -> None:
        await self.publisher.partitions_for(topics.EVENTS)

    async def _probe_redis(self) -> None:
        await self.redis.ping()

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop taking records, let in-flight handlers finish (bounded), then release resources.

        Offsets of unfinished records are not committed: they are redelivered, and the inbox
        absorbs whatever did commit.
        """
        log.info("worker_stopping")
        await self.broker.stop()
        if self.relay is not None:
            self.relay.stop()  # finishes the batch in flight, then returns
        if self.runner is not None:
            # A job in flight is cancelled: its partial artifact is aborted, its lease lapses
            # and another runner (or this one after a restart) takes it again.
            self.runner.stop()
        for task in self._tasks:
            if task is not self._relay_task:
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*self._tasks, return_exceptions=True), self.settings.shutdown_grace_s
            )
        await self.http.stop()
        await self.publisher.stop()
        await self.redis.aclose()
        await self.pool.close()
        log.info("worker_stopped")


async def run_worker(settings: Settings, roles: list[str]) -> None:
    worker = Worker(settings, roles)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    await worker.start()
    try:
        await worker.wait()
    finally:
        await worker.stop()
