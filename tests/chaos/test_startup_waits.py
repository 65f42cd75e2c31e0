"""A worker started while PostgreSQL is shutting down (it refuses new connections with SQLSTATE
57P03 while sessions are still open) waits for it, and is ready once PostgreSQL is back, instead
of exiting: a supervisor restarting workers during a database restart must not lose them."""

import asyncio

import asyncpg
import pytest

from tests.chaos.private_stack import PrivateStack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.chaos


async def test_a_worker_started_while_postgres_shuts_down_waits_and_becomes_ready(
    stack_workers: PrivateStack,
) -> None:
    stack = stack_workers
    holder = await stack.connect()  # keeps the smart shutdown going until it closes
    worker = await stack.worker(["relay"], "startup-waits", start=False)
    starting: asyncio.Task[None] | None = None
    try:
        await stack.postgres_stop_smart()
        with pytest.raises(asyncpg.CannotConnectNowError):  # the state this test is about
            await (await stack.connect()).close()

        starting = asyncio.create_task(worker.start())  # returns once /readyz answers 200

        def waiting() -> bool:
            assert starting is not None
            if starting.done():  # it exited: say how, rather than time out
                starting.result()
            text = worker.log_path.read_text() if worker.log_path.exists() else ""
            return "waiting_for_dependency" in text and "shutting down" in text

        await wait_until(waiting, 60, what="the worker to wait for PostgreSQL", interval=0.2)
        assert worker.running and not starting.done()
    finally:
        await holder.close()  # the smart shutdown completes
        await stack.postgres_up()
    await asyncio.wait_for(starting, 120)
    assert worker.running
