"""The one leader-election loop: the outbox relay, the scheduler, retention, the warm pool's refill
and the catalogue upkeep each run their work under it, with their own lock id, built by
``leader_election``. The last three do one round every interval, the shell ``PeriodicLeaderJob``.

A standby tries the lock every ``poll_s``. The leader runs its work as a task and, beside it,
checks every ``check_s`` that it still holds the lock; when the check fails (session ended,
unreachable, lock gone) the work is cancelled and the lock session dropped, so a leader never
keeps working on a lock it lost. Work that fails steps down the same way, and the loop tries
again after ``poll_s``.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

import structlog

from adapters.postgres.errors import is_transient
from adapters.postgres.leader_lock import PostgresLeaderLock, check_interval_s
from domain.errors import TransientError
from runtime.settings import Settings

log = structlog.get_logger(__name__)


class LeaderLock(Protocol):
    """A lock at most one process holds; the holder loses it if its session ends."""

    async def acquire(self) -> bool: ...
    async def holds(self) -> bool: ...
    async def release(self) -> None: ...


L = TypeVar("L", bound=LeaderLock)


class Gauge(Protocol):
    def set(self, value: float) -> None: ...


class LeaderElection(Generic[L]):
    """Runs ``work`` only while holding ``lock``; ``on_change(True/False)`` follows leadership.

    ``lock`` stays reachable, for work that must run on the lock's own session."""

    def __init__(
        self,
        name: str,
        lock: L,
        work: Callable[[], Coroutine[Any, Any, None]],
        *,
        poll_s: float,
        check_s: float,
        on_change: Callable[[bool], None] = lambda _: None,
    ) -> None:
        self._name, self.lock, self._work = name, lock, work
        self._poll_s, self._check_s = poll_s, check_s
        self._on_change = on_change
        self._stopping = asyncio.Event()
        self.is_leader = False
        self.terms = 0  # how many times this process became leader
        self._unwinding: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Until stop(): wait for the lock, lead while holding it, step down when it is lost."""
        while not self._stopping.is_set():
            try:
                # A cancelled term that has not unwound yet must not overlap the next one.
                if self._unwinding is not None and not self._unwinding.done():
                    pass
                elif await self.lock.acquire():
                    await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # lost session, broker down: step down and try again
                if isinstance(e, TransientError) or is_transient(e):
                    log.warning("leader_interrupted", role=self._name, error=str(e))
                else:
                    log.exception("leader_error", role=self._name)
                await self._step_down()
            await self._sleep(self._poll_s)
        await self._step_down()

    def stop(self) -> None:
        """Ask the loop to end; the work is expected to finish its current step (its own stop)."""
        self._stopping.set()

    async def _lead(self) -> None:
        self._set(True)
        log.info("leader_elected", role=self._name)
        work = asyncio.create_task(self._work())
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=self._check_s)
                if work.done() or self._stopping.is_set():
                    break
                if not await self.lock.holds():
                    log.warning("leader_lost_lock", role=self._name)
                    break
            if self._stopping.is_set() and not work.done():
                await work  # shutting down: the work finishes its step (the worker bounds this)
        finally:
            if not work.done():
                # Step down now, not when the work has unwound: cancelling a statement on a
                # connection that went silent can itself wait on that connection.
                work.cancel()
                work.add_done_callback(_log_failure)
                self._unwinding = work
        if work.done() and not work.cancelled():
            work.result()  # a failed work is an interruption: raise it to run()
        await self._step_down()

    async def _step_down(self) -> None:
        if self.is_leader:
            log.info("leader_stepped_down", role=self._name)
        self._set(False)
        await self.lock.release()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _set(self, leader: bool) -> None:
        if leader and not self.is_leader:
            self.terms += 1
        self.is_leader = leader
        self._on_change(leader)


def _log_failure(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("leader_work_failed_unwinding", error=str(task.exception()))


def leader_election(
    settings: Settings,
    role: str,
    lock_id: int,
    work: Callable[[], Coroutine[Any, Any, None]],
    *,
    poll_s: float,
    gauge: Gauge | None = None,
) -> LeaderElection[PostgresLeaderLock]:
    """The loop for one role: its own Postgres lock (session ``tenant-service-<role>``) with the
    shared session timeout and check interval; ``gauge`` (if given) is 1 while leading."""
    lock = PostgresLeaderLock(
        settings.pg_dsn.get_secret_value(),
        lock_id,
        session_timeout_s=settings.leader_session_timeout_s,
        application_name=f"tenant-service-{role}",
        statement_timeout_ms=settings.pg_statement_timeout_ms,
    )
    return LeaderElection(
        role,
        lock,
        work,
        poll_s=poll_s,
        check_s=check_interval_s(settings.leader_session_timeout_s),
        on_change=(lambda leader: gauge.set(1 if leader else 0)) if gauge else lambda _: None,
    )


class PeriodicLeaderJob:
    """Calls ``once`` every ``interval_s`` (and at once on becoming leader) while holding its own
    lock ``lock_id``; ``stop()`` ends the loop after the current round, which may look at
    ``stopping`` to end sooner. A job that calls ``stand_down()`` does no more rounds but keeps
    the lock idle until stopped, so no standby takes the job up to the same end."""

    def __init__(
        self,
        settings: Settings,
        role: str,
        lock_id: int,
        interval_s: float,
        once: Callable[[], Awaitable[object]],
    ) -> None:
        self._interval_s, self._once = interval_s, once
        self._stopping = asyncio.Event()
        self._stood_down = False
        self.election = leader_election(
            settings,
            role,
            lock_id,
            self._while_leader,
            # A standby polls well inside the session timeout, so its idle session is not ended
            # under it between polls.
            poll_s=min(interval_s, settings.leader_session_timeout_s / 2),
        )

    async def run(self) -> None:
        """Until stop(): do a round every interval while holding the job's lock."""
        await self.election.run()

    def stop(self) -> None:
        self._stopping.set()
        self.election.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stand_down(self) -> None:
        """No rounds after the current one until the process stops (a restart starts afresh)."""
        self._stood_down = True

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if stop() is called meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _while_leader(self) -> None:
        while not self._stopping.is_set():
            await self._once()
            if self._stood_down:
                await self._stopping.wait()  # keep the lock, do nothing
                return
            await self.pause(self._interval_s)
