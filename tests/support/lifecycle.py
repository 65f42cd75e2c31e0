"""Helpers of the long-backup and cross-topic suites: a tenant with hard-to-compress data, and
watching the job table for concurrent jobs of one tenant."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from domain.tenant_ids import quote_ident
from tests.support import names as ns
from tests.support.waiting import wait_until

__all__ = ["fill_incompressible", "running_job", "watch_concurrency"]


async def fill_incompressible(pg: asyncpg.Connection, tenant_id: str, rows: int) -> None:
    """About ``rows`` x 720 bytes of base64 of random bytes: zstd can't shrink it much."""
    await pg.execute(
        f"INSERT INTO {quote_ident(ns.tenant(tenant_id))}.users (email, display_name)"
        " SELECT 'u' || g || '@x.io', (SELECT string_agg(encode(decode(md5(random()::text"
        " || g || i), 'hex'), 'base64'), '') FROM generate_series(1, 30) AS i)"
        " FROM generate_series(1, $1) AS g", rows)


async def running_job(pg: asyncpg.Connection, job_id: str, limit_s: float = 30.0) -> None:
    """Until the job runs and has written something."""
    async def started() -> bool:
        return bool(await pg.fetchval(
            f"SELECT 1 FROM {ns.CONTROL}.backup_jobs WHERE job_id = $1 AND status = 'running'"
            " AND progress_bytes > 0", job_id))

    await wait_until(started, limit_s, what=f"job {job_id} running", interval=0.1)


@contextlib.asynccontextmanager
async def watch_concurrency(dsn: str, tenant_id: str) -> AsyncIterator[list[int]]:
    """Samples, every 100 ms, how many of the tenant's jobs run under a live lease."""
    samples: list[int] = []
    conn = await asyncpg.connect(dsn)

    async def sample() -> None:
        while True:
            samples.append(int(await conn.fetchval(
                f"SELECT count(*) FROM {ns.CONTROL}.backup_jobs WHERE tenant_id = $1"
                " AND status = 'running' AND lease_until >= now()", tenant_id)))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await conn.close()
