"""PostgresJobLeases: the job runner's claims and lease renewals (service.ports.JobLeases).

Each is its own short transaction on a pooled connection, outside any unit of work: a claim
must commit before the job runs, and a renewal must never wait behind the job's own writes.
Driver errors leave as the domain's (TransientError/PermanentError).
"""

from collections.abc import Sequence

import asyncpg

from adapters.postgres.backup_jobs import PostgresBackupJobs
from adapters.postgres.errors import translated
from domain.jobs import Job


class PostgresJobLeases:
    def __init__(self, pool: asyncpg.Pool, jobs: PostgresBackupJobs) -> None:
        self._pool, self._jobs = pool, jobs

    async def claim(
        self, owner: str, kinds: Sequence[str], lease_s: float, max_attempts: int
    ) -> Job | None:
        with translated("claim a job"):
            return await self._jobs.claim(self._pool, owner, list(kinds), lease_s, max_attempts)

    async def renew(self, job_id: str, owner: str, lease_s: float, progress_bytes: int) -> bool:
        with translated(f"renew the lease of {job_id}"):
            async with self._pool.acquire() as conn:
                return await self._jobs.renew(conn, job_id, owner, lease_s, progress_bytes)
