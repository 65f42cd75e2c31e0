"""The composition root of a worker process: builds the shared adapters once, wires the roles
asked for, serves health and metrics, and stops gracefully on SIGTERM."""

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import structlog
from faststream.kafka import KafkaBroker

from adapters.kafka.producer import KafkaEventPublisher
from adapters.kafka.topics import ensure_topics
from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.pool import create_pool
from consumers.delivery import Delivery
from domain.circuit_breaker import CircuitState
from domain.errors import TransientError
from runtime.http import HealthServer
from runtime.lag import watch_lag
from runtime.roles import ROLE_BUILDERS, Background
from runtime.settings import Settings

log = structlog.get_logger(__name__)


def expand_roles(names: list[str]) -> list[str]:
    roles = list(ROLE_BUILDERS) if "all" in names else list(dict.fromkeys(names))
    unknown = [r for r in roles if r not in ROLE_BUILDERS]
    if unknown or not roles:
        raise SystemExit(
            f"unknown worker role(s) {unknown}; choose from {', '.join(ROLE_BUILDERS)} or all"
        )
    return roles


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


class Worker:
    def __init__(self, settings: Settings, roles: list[str]) -> None:
        self.settings = settings
        self.roles = roles
        self.closers: list[Callable[[], Awaitable[None]]] = []
        self.deliveries: list[Delivery] = []
        self._background: list[Background] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self.failed = False
        self.abandoned_steps = 0  # shutdown steps that overran and were left running

    async def start(self) -> None:
        s = self.settings
        self.pool = await _until_ready("postgres", lambda: create_pool(s.pg_pool), s.startup_timeout_s)
        self.closers.append(self.pool.close)
        async with self.pool.acquire() as conn:
            await ensure_control_schema(
                conn, s.names.control_schema, s.names.app_role,
                api_reader_role=s.names.api_reader_role,
            )
        await _until_ready("kafka", lambda: ensure_topics(s.kafka), s.startup_timeout_s)
        self.publisher = KafkaEventPublisher(s.kafka)
        await _until_ready("kafka producer", self.publisher.start, s.startup_timeout_s)
        self.closers.append(self.publisher.stop)
        self.redis = aioredis.from_url(s.redis_url.get_secret_value())
        self.closers.append(self.redis.aclose)
        self.outbox = PostgresOutbox(s.names.control_schema, s.result_content_mode)
        self.broker = KafkaBroker(
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
        for role in self.roles:
            self._background += await ROLE_BUILDERS[role](self)
        await self.broker.start()
        self._tasks = [asyncio.create_task(b.run()) for b in self._background]
        for task in self._tasks:
            task.add_done_callback(self._background_ended)
        subscribers = [(getattr(sub, "group_id", ""), sub) for sub in self.broker.subscribers]
        self._lag_task = asyncio.create_task(watch_lag(subscribers, s.lag_interval_s))
        self.http = HealthServer(
            s.http_host,
            s.http_port,
            {
                "postgres": self._probe_postgres,
                "kafka": self._probe_kafka,
                "redis": self._probe_redis,
                "consumers": self._probe_circuits,
            },
            timeout_s=s.readiness_timeout_s,
        )
        await self.http.start()
        self.closers.append(self.http.stop)
        log.info("worker_started", roles=self.roles)

    async def _probe_postgres(self) -> None:
        async with self.pool.acquire(timeout=self.settings.readiness_timeout_s) as conn:
            await conn.fetchval("SELECT 1")

    async def _probe_kafka(self) -> None:
        await self.publisher.ping()

    async def _probe_redis(self) -> None:
        await self.redis.ping()

    async def _probe_circuits(self) -> None:
        """Not ready while a consumer group's breaker is open (its dependency keeps failing)."""
        open_ = [d.group for d in self.deliveries if d.breaker.state == CircuitState.OPEN]
        if open_:
            raise RuntimeError(f"circuit open: {', '.join(open_)}")

    def _note(self, finished: bool) -> None:
        self.abandoned_steps += not finished

    def request_stop(self) -> None:
        self._stopped.set()

    def _background_ended(self, task: "asyncio.Task[None]") -> None:
        """A loop that ends while we are not stopping is a bug: stop the process with status 1
        so its supervisor restarts it, rather than run on without backups or a relay."""
        if self._stopped.is_set() or task.cancelled():
            return
        log.error("background_task_died", error=repr(task.exception()))
        self.failed = True
        self.request_stop()

    async def wait(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop taking records, let in-flight work finish within the grace period, release.

        Offsets of unfinished records are not committed: they are redelivered, and the inbox
        absorbs whatever did commit. Every step is bounded: a step that overruns is logged with
        the stacks of the tasks still alive and then abandoned, so SIGTERM always ends the process
        (a supervisor's SIGKILL would otherwise be the only way out, and would say nothing).
        """
        log.info("worker_stopping")
        grace = self.settings.shutdown_grace_s
        for delivery in self.deliveries:  # handled offsets committed; later ones commit at once
            self._note(
                await _bounded(f"stop consumer group {delivery.group}", delivery.stop(), grace)
            )
        if hasattr(self, "broker"):
            # FastStream waits up to graceful_timeout for handlers in flight, then the consumers
            # leave their groups (one request each).
            self._note(await _bounded("stop broker", self.broker.stop(), grace + _STEP_S))
        for background in self._background:
            background.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                self._note(
                    await _bounded(
                        "cancel background loops",
                        asyncio.gather(*pending, return_exceptions=True),
                        _STEP_S,
                    )
                )
        if hasattr(self, "_lag_task"):
            self._lag_task.cancel()
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                self._note(
                    await _bounded(
                        f"close {getattr(close, '__qualname__', close)}", close(), _STEP_S
                    )
                )
        log.info("worker_stopped")


_STEP_S = 10.0  # for a shutdown step that does not wait for work: a close, a leave-group


async def _bounded(step: str, work: Awaitable[Any], limit_s: float) -> bool:
    """Run one shutdown step for at most ``limit_s``; name it, and what is stuck, if it overruns.

    An overrunning step is cancelled but not awaited (wait_for would wait for the cancellation,
    and a step stuck on a dead peer may never finish it).
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=limit_s)
    if done:
        task.result()  # re-raise what the step raised
        return True
    current = asyncio.current_task()
    stuck = {t.get_name(): _stack_of(t) for t in asyncio.all_tasks() if t is not current}
    log.error("shutdown_step_overran", step=step, limit_s=limit_s, tasks=stuck)
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no noise
    return False


def _stack_of(task: "asyncio.Task[Any]") -> list[str]:
    """Where a suspended task waits: its await chain (Task.get_stack gives one frame only)."""
    frames: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(frames) < 20:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            frames.append(repr(awaited)[:120])  # a future, or a finished coroutine
            break
        frames.append(
            f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {frame.f_code.co_name}"
        )
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return frames


async def run_worker(settings: Settings, roles: list[str]) -> None:
    worker = Worker(settings, roles)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    try:
        await worker.start()
        await worker.wait()
    finally:
        await worker.stop()
    if worker.abandoned_steps:
        # asyncio.run would now wait, without a bound, for the abandoned tasks to honour their
        # cancellation: leave instead, so SIGTERM always ends the process.
        log.error("worker_exit_forced", abandoned_steps=worker.abandoned_steps)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(1)
    if worker.failed:
        raise SystemExit(1)
