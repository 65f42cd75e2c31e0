"""The composition root of a worker process: builds the shared resources once, assembles the
parts the roles asked for return, serves health and metrics, and stops gracefully on SIGTERM."""

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from typing import Any

import structlog

from domain.circuit_breaker import CircuitState
from runtime.bootstrap import Closer, Resources, RoleParts, build_resources
from runtime.http import HealthServer
from runtime.lag import watch_lag
from runtime.roles import ROLE_BUILDERS
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


class Worker:
    def __init__(self, settings: Settings, roles: list[str]) -> None:
        self.settings = settings
        self.roles = roles
        self._closers: list[Closer] = []
        self._resources: Resources | None = None
        self._parts = RoleParts()  # of every role, together
        self._tasks: list[asyncio.Task[None]] = []
        self._lag_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.failed = False
        self.abandoned_steps = 0  # shutdown steps that overran and were left running

    async def start(self) -> None:
        s = self.settings
        res = self._resources = await build_resources(s, self._closers)
        for role in self.roles:
            parts = await ROLE_BUILDERS[role](res)
            self._closers += parts.closers
            self._parts = RoleParts(
                deliveries=self._parts.deliveries + parts.deliveries,
                background=self._parts.background + parts.background,
            )
        await res.broker.start()
        self._tasks = [asyncio.create_task(b.run()) for b in self._parts.background]
        for task in self._tasks:
            task.add_done_callback(self._background_ended)
        subscribers = [(getattr(sub, "group_id", ""), sub) for sub in res.broker.subscribers]
        self._lag_task = asyncio.create_task(watch_lag(subscribers, s.lag_interval_s))
        self.http = HealthServer(
            s.http_host,
            s.http_port,
            {**res.checks, "consumers": self._probe_circuits},
            timeout_s=s.readiness_timeout_s,
        )
        await self.http.start()
        self._closers.append(self.http.stop)
        log.info("worker_started", roles=self.roles)

    async def _probe_circuits(self) -> None:
        """Not ready while a consumer group's breaker is open (its dependency keeps failing)."""
        deliveries = self._parts.deliveries
        open_ = [d.group for d in deliveries if d.breaker.state == CircuitState.OPEN]
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
        for delivery in self._parts.deliveries:  # handled offsets committed; later ones at once
            self._note(
                await _bounded(f"stop consumer group {delivery.group}", delivery.stop(), grace)
            )
        if self._resources is not None:
            # FastStream waits up to graceful_timeout for handlers in flight, then the consumers
            # leave their groups (one request each).
            broker = self._resources.broker
            self._note(await _bounded("stop broker", broker.stop(), grace + _STEP_S))
        for background in self._parts.background:
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
        if self._lag_task is not None:
            self._lag_task.cancel()
        for close in reversed(self._closers):
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


# Young objects are collected every 20,000 net allocations instead of CPython's 700, and the
# older generations less often: a consumer allocates and frees a few dozen objects per event,
# and with the defaults the collector ran for about a tenth of a worker's CPU on the consumer
# path (bench/run profile 0, with and without), walking objects that live as long as it does.
_GC_THRESHOLDS = (20_000, 50, 100)


def _settle_collector() -> None:
    """What start-up built (modules, schemas, pools, connections) moves out of the collector's
    sight for good, and the thresholds above apply from here on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


async def run_worker(settings: Settings, roles: list[str]) -> None:
    worker = Worker(settings, roles)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    try:
        await worker.start()
        _settle_collector()
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
