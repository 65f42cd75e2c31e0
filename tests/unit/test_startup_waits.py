"""Start-up waits for a PostgreSQL that refuses connections for now (starting up, shutting down,
in recovery: SQLSTATE 57P03) as it waits for one that is not listening, instead of exiting."""

from typing import Any

import asyncpg
import pytest

from adapters.postgres import pool as pool_module
from adapters.postgres.pool import PoolConfig, create_pool
from runtime import bootstrap

CONFIG = PoolConfig(dsn="postgresql://u:p@127.0.0.1:1/db", min_size=1, max_size=2,
                    statement_timeout_ms=1000, lock_timeout_ms=1000)


async def test_a_database_shutting_down_is_waited_for_not_a_reason_to_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[int] = []
    made = object()

    async def refusing_twice(*args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        if len(attempts) <= 2:
            raise asyncpg.CannotConnectNowError("the database system is shutting down")
        return made

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(pool_module.asyncpg, "create_pool", refusing_twice)
    monkeypatch.setattr(bootstrap.asyncio, "sleep", no_wait)

    got = await bootstrap._until_ready("postgres", lambda: create_pool(CONFIG), 60.0)

    assert got is made and len(attempts) == 3


async def test_a_refused_login_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refusing(*args: Any, **kwargs: Any) -> Any:
        raise asyncpg.InvalidPasswordError("password authentication failed")

    monkeypatch.setattr(pool_module.asyncpg, "create_pool", refusing)

    with pytest.raises(Exception, match="password authentication failed"):
        await bootstrap._until_ready("postgres", lambda: create_pool(CONFIG), 60.0)
