"""The leader loop on a fake lock: acquire, lose, step down, re-acquire; no stack."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from producers.leader import LeaderElection
from tests.support.waiting import wait_until


class FakeLeaderLock:
    """A lock another process can take away (``lose``) and give back (``free``)."""

    def __init__(self) -> None:
        self.available = True
        self.held = False
        self.releases = 0
        self.attempts = 0

    async def acquire(self) -> bool:
        self.attempts += 1
        if self.available and not self.held:
            self.held, self.available = True, False
        return self.held

    async def holds(self) -> bool:
        return self.held

    async def release(self) -> None:
        if self.held:
            self.available = True
        self.held = False
        self.releases += 1

    def lose(self) -> None:
        """The session ended (server timeout): the lock is gone and someone else has it."""
        self.held = False

    def free(self) -> None:
        self.available = True


class Work:
    def __init__(self) -> None:
        self.running = 0
        self.started = 0
        self.cancelled = 0
        self.fail_next: Exception | None = None

    async def __call__(self) -> None:
        self.started += 1
        self.running += 1
        try:
            if self.fail_next is not None:
                error, self.fail_next = self.fail_next, None
                raise error
            await asyncio.Event().wait()  # works until cancelled
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


@pytest.fixture
async def election() -> AsyncIterator[tuple[LeaderElection, FakeLeaderLock, Work, list[bool]]]:
    lock, work, changes = FakeLeaderLock(), Work(), []
    loop = LeaderElection("test", lock, work, poll_s=0.01, check_s=0.01, on_change=changes.append)
    task = asyncio.create_task(loop.run())
    yield loop, lock, work, changes
    loop.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_leads_while_holding_and_steps_down_when_the_lock_is_lost(
    election: tuple[LeaderElection, FakeLeaderLock, Work, list[bool]],
) -> None:
    loop, lock, work, changes = election
    await wait_until(lambda: work.running == 1, 5, what="work started as leader")
    assert loop.is_leader and changes[-1] is True

    lock.lose()  # another session could now take it: our work must stop
    await wait_until(lambda: not loop.is_leader, 5, what="step down")
    assert work.running == 0 and work.cancelled == 1
    assert changes[-1] is False
    tried = lock.attempts
    await wait_until(lambda: lock.attempts >= tried + 3, 5, what="standby polls")
    # the lock is not free: polling did not start a new term
    assert loop.terms == 1 and work.started == 1

    lock.free()
    await wait_until(lambda: loop.terms == 2 and work.running == 1, 5, what="re-acquired")
    assert loop.is_leader


async def test_failed_work_steps_down_and_leads_again(
    election: tuple[LeaderElection, FakeLeaderLock, Work, list[bool]],
) -> None:
    loop, lock, work, _ = election
    await wait_until(lambda: work.running == 1, 5, what="first term")
    lock.lose()
    await wait_until(lambda: not loop.is_leader, 5, what="step down")
    work.fail_next = ConnectionResetError("broker gone")
    lock.free()
    # the failed term releases the lock and a later poll leads again with fresh work
    await wait_until(lambda: loop.terms == 3 and work.running == 1, 5, what="third term")
    assert lock.releases >= 2 and work.started == 3


async def test_stop_lets_the_work_finish_and_releases_the_lock() -> None:
    lock, finished = FakeLeaderLock(), asyncio.Event()
    stopping = asyncio.Event()

    async def work() -> None:
        await stopping.wait()
        finished.set()

    loop = LeaderElection("test", lock, work, poll_s=0.01, check_s=0.01)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: loop.is_leader, 5, what="leader")
    stopping.set()
    loop.stop()
    await asyncio.wait_for(task, 5)
    assert finished.is_set() and not lock.held and not loop.is_leader


async def test_steps_down_at_once_when_the_work_is_slow_to_unwind() -> None:
    lock, unwind = FakeLeaderLock(), asyncio.Event()
    started = 0

    async def work() -> None:
        nonlocal started
        started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await unwind.wait()  # e.g. cancelling a statement on a connection gone silent
            raise

    loop = LeaderElection("test", lock, work, poll_s=0.01, check_s=0.01)
    rounds = 0
    sleep = loop._sleep

    async def counted_sleep(seconds: float) -> None:
        nonlocal rounds
        rounds += 1
        await sleep(seconds)

    loop._sleep = counted_sleep  # type: ignore[method-assign]
    task = asyncio.create_task(loop.run())
    try:
        await wait_until(lambda: loop.is_leader, 5, what="leader")
        lock.lose()
        await wait_until(lambda: not loop.is_leader, 5, what="step down before unwinding")
        lock.free()
        seen = rounds
        await wait_until(lambda: rounds >= seen + 3, 5, what="standby rounds while unwinding")
        assert loop.terms == 1 and started == 1  # the free lock was not taken: no overlap
        unwind.set()
        await wait_until(lambda: loop.terms == 2, 5, what="next term after unwinding")
    finally:
        loop.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_each_role_gets_its_own_lock_session_with_the_shared_timings() -> None:
    """relay, scheduler and retention build their loop one way: a lock session named after the
    role on the role's lock id, the check interval from the shared session timeout, a gauge."""
    from adapters.postgres.leader_lock import check_interval_s
    from producers.leader import leader_election
    from runtime.settings import Settings

    settings = Settings(pg_dsn="postgresql://u:p@127.0.0.1:1/db", leader_session_timeout_s=20)  # type: ignore[arg-type]

    class Gauge:
        value = -1.0

        def set(self, value: float) -> None:
            self.value = value

    async def work() -> None: ...

    gauge = Gauge()
    loop = leader_election(settings, "scheduler", 4242, work, poll_s=3.0, gauge=gauge)
    assert (loop.lock.lock_id, loop.lock._app) == (4242, "tenant-service-scheduler")
    assert loop._check_s == check_interval_s(20) and loop._poll_s == 3.0
    loop._set(True)
    assert gauge.value == 1 and loop.is_leader
    loop._set(False)
    assert gauge.value == 0
