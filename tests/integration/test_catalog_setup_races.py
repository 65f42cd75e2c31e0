"""Start-up set-ups that change the same catalog rows never fail each other.

A worker's bootstrap (control schema, app and API roles) and a restorer's first restore (the
restore role and its swap functions) both grant on the control schema: the same pg_namespace
row. PostgreSQL does not queue two such updates; the later one fails with "tuple concurrently
updated" once the earlier commits. A restore that set itself up while a replica was starting
answered RestoreFailed (database_error) in the chaos run. Each test here holds one set-up open
in a transaction, starts the other, lets it reach whatever it waits on, then commits the first:
the second must finish, not fail.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import asyncpg
import pytest

from adapters.dump_pipeline import libpq_env
from adapters.postgres.control_schema import ensure_control_schema
from adapters.postgres.restore_swap import ensure_restore_role
from runtime.settings import Settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack

SetUp = Callable[[asyncpg.Connection], Coroutine[Any, Any, object]]


def _set_ups(settings: Settings) -> dict[str, SetUp]:
    names = settings.names
    password = libpq_env(settings.pg_dsn.get_secret_value()).get("PGPASSWORD", "")
    return {
        "bootstrap": lambda conn: ensure_control_schema(
            conn, names.control_schema, names.app_role, api_reader_role=names.api_reader_role
        ),
        "restore role": lambda conn: ensure_restore_role(conn, names.control_schema, password),
    }


@pytest.fixture
async def two(settings: Settings) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    dsn = settings.pg_dsn.get_secret_value()
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize(("held", "started"), [("restore role", "bootstrap"),
                                               ("bootstrap", "restore role")])
async def test_a_set_up_waits_for_the_other_and_then_succeeds(
    settings: Settings, pg: asyncpg.Connection,
    two: tuple[asyncpg.Connection, asyncpg.Connection], held: str, started: str,
) -> None:
    set_ups = _set_ups(settings)
    first, second = two
    outer = first.transaction()
    await outer.start()  # the set-up's own transaction becomes a savepoint: its changes stay open
    await set_ups[held](first)
    pid = second.get_server_pid()
    task = asyncio.create_task(set_ups[started](second))
    try:
        async def waiting() -> bool:
            if task.done():  # it did not wait at all: nothing of the first was in its way
                return True
            return bool(await pg.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid))

        await wait_until(waiting, 30, what=f"the {started} to wait on the open {held}")
    finally:
        await outer.commit()
    await asyncio.wait_for(task, 30)  # before: PermanentError "tuple concurrently updated"
