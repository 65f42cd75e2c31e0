"""The asyncpg pool, with timeouts that keep one slow statement from holding a tenant's lock."""

from dataclasses import dataclass

import asyncpg

from adapters.postgres.errors import translated


@dataclass(frozen=True)
class PoolConfig:
    dsn: str
    min_size: int
    max_size: int
    statement_timeout_ms: int
    lock_timeout_ms: int

    def __repr__(self) -> str:  # the DSN may carry a password
        return f"PoolConfig(min_size={self.min_size}, max_size={self.max_size})"


async def create_pool(config: PoolConfig, *, max_size: int | None = None) -> asyncpg.Pool:
    """The pool, its first connections open. A server that refuses connections for now
    (starting up, shutting down, in recovery: SQLSTATE 57P03) is a TransientError, as one that
    is not listening is: start-up waits for it rather than exiting."""
    with translated("connect to PostgreSQL"):
        pool = await asyncpg.create_pool(
            config.dsn,
            min_size=min(config.min_size, max_size or config.max_size),
            max_size=max_size or config.max_size,
            command_timeout=config.statement_timeout_ms / 1000 + 5,
            server_settings={
                "application_name": "tenant-service",
                "statement_timeout": str(config.statement_timeout_ms),
                "lock_timeout": str(config.lock_timeout_ms),
                # A plan per execution, never one cached for the connection's life: the queues
                # (inbox, outbox, its queue, the warm pool) grow by orders of magnitude between
                # two ANALYZEs, and a plan made while the outbox held its first rows
                # scanned the whole of it on every poll. Our statements run per batch, not per
                # event: the burst's PostgreSQL CPU per event did not rise with this (bench/).
                "plan_cache_mode": "force_custom_plan",
            },
        )
    assert pool is not None
    return pool
