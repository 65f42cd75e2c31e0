"""Erase (off-boarding, GDPR): every step is idempotent, so a retry may start anywhere.

Every erase job of a tenant performs the same erase, the one its first accepted request decided
(recorded on the registry row): a second request, or a retry after the tombstone committed,
keeps that erase's archive and reports its id.

Order: optional final archive (encrypted to operator recipients only, per policy) -> tables
dropped in batches (bounded locks per transaction) -> schema and role -> Redis keys -> the
tenant's backup key destroyed (crypto-shredding every other backup, wherever copies went) and
their catalog rows and artifacts removed -> registry tombstone. The tenant's jobs still waiting
run afterwards and answer unknown_tenant, one result per request.
"""

from typing import Any

import asyncpg
import redis.asyncio as aioredis
import structlog

from adapters.age_keys import PostgresTenantKeys
from adapters.postgres.backup_jobs import Job, PostgresBackupJobs
from adapters.postgres.errors import translated
from adapters.postgres.tenant_store import PostgresTenantStore
from contracts.events import TenantErased
from domain.errors import PermanentError, TransientError
from domain.job_ids import archive_id_for
from domain.lifecycle import TenantStatus, doomed_backups
from domain.tenant_ids import quote_ident
from service.backups import BackupTaker

log = structlog.get_logger(__name__)


class Eraser:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        store: PostgresTenantStore,
        jobs: PostgresBackupJobs,
        keys: PostgresTenantKeys,
        taker: BackupTaker,
        redis: aioredis.Redis,
        drop_batch: int,
        redis_prefix: str = "tenant:",
    ) -> None:
        self._pool, self._store, self._jobs, self._keys = pool, store, jobs, keys
        self._taker, self._redis = taker, redis
        self._batch, self._prefix = drop_batch, redis_prefix

    async def erase(self, job: Job, archive: bool, progress: Any) -> TenantErased:
        """Run (or finish) the tenant's erase; any erase job of the tenant, retried or not,
        performs the same erase: the archive decided by the first accepted request, read from
        the registry, is taken once, kept, and reported by every one of them.

        ``archive`` matters only for a tenant whose registry row recorded no erase (the job
        was queued by a build that did not record it).
        """
        tenant_id = job.tenant_id
        erased: list[str] = []
        async with self._pool.acquire() as conn:
            record = await self._store.get(conn, tenant_id)
        if record is None:
            raise PermanentError("unknown_tenant", tenant_id)
        if record.status in (TenantStatus.ERASING, TenantStatus.ERASED):
            archive_id = record.erase_archive_id
        else:
            archive_id = archive_id_for(job.job_id) if archive else None
        if archive_id is not None:
            if await self._archive(job, record.status, archive_id, progress):
                erased.append("archived")
        erased += await self._drop_database_objects(tenant_id)
        erased += await self._drop_redis_keys(tenant_id)
        async with self._pool.acquire() as conn, conn.transaction():
            with translated(f"erase {tenant_id}"):
                await self._store.lock_tenant(conn, tenant_id)
                if await self._keys.destroy(conn, tenant_id):
                    erased.append("backup_key")
                rows = await self._jobs.backups(conn, tenant_id)
                doomed_ids = set(doomed_backups([r.backup_id for r in rows], archive_id))
                doomed = [r for r in rows if r.backup_id in doomed_ids]
                await self._jobs.forget(conn, [r.backup_id for r in doomed])
                # The tenant's jobs still waiting are not cancelled here: each request must get
                # its one answer, and they do when they run (BackupFailed / RestoreFailed,
                # unknown_tenant; erase jobs TenantErased: the registry row is a tombstone now).
                await self._store.tombstone(conn, tenant_id)
        if doomed:
            erased.append(f"backups:{len(doomed)}")
        await self._taker.delete_artifacts(doomed)  # unreadable already: the key is gone
        log.info("tenant_erased", erased=erased, archive_backup_id=archive_id)
        return TenantErased(tenant_id=tenant_id, archive_backup_id=archive_id, erased=erased)

    async def _archive(
        self, job: Job, status: TenantStatus, archive_id: str, progress: Any
    ) -> bool:
        """The final archive, taken once under its fixed id; True when it is catalogued."""
        async with self._pool.acquire() as conn:
            if await self._jobs.backup(conn, job.tenant_id, archive_id) is not None:
                return True
        if status == TenantStatus.ERASED:  # the data is gone: nothing left to archive
            log.error("erase_archive_missing", archive_backup_id=archive_id)
            return False
        archive_job = Job(
            archive_id,
            "backup",
            job.tenant_id,
            job.cause_id,
            job.correlation_id,
            None,
            job.attempts,
        )
        _, row = await self._taker.take(archive_job, progress, operators_only=True)
        async with self._pool.acquire() as conn:
            await self._jobs.catalogue(conn, row)
        return True

    async def _drop_database_objects(self, tenant_id: str) -> list[str]:
        schema = self._store.schema_of(tenant_id)
        while True:  # batches keep each transaction far below max_locks_per_transaction
            async with self._pool.acquire() as conn, conn.transaction():
                with translated(f"erase {tenant_id} tables"):
                    await self._store.lock_tenant(conn, tenant_id)
                    tables = (await self._store.tables(conn, schema))[: self._batch]
                    if not tables:
                        break
                    await self._store.drop_tables(conn, schema, tables)
        async with self._pool.acquire() as conn, conn.transaction():
            with translated(f"erase {tenant_id} schema"):
                await self._store.lock_tenant(conn, tenant_id)
                await self._store.revoke_access(conn, tenant_id)
                # Schemas a restore replaced are the tenant's data too.
                replaced = await self._jobs.replaced_of(conn, tenant_id)
                for old in replaced:
                    await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(old)} CASCADE")
                    await self._jobs.forget_replaced(conn, old)
                dropped = await self._store.drop_schema_and_role(conn, tenant_id)
                return dropped + ([f"replaced_schemas:{len(replaced)}"] if replaced else [])

    async def _drop_redis_keys(self, tenant_id: str) -> list[str]:
        deleted = 0
        try:
            async for batch in _scan_batches(self._redis, f"{self._prefix}{tenant_id}:*"):
                deleted += await self._redis.unlink(*batch)
        except (aioredis.ConnectionError, aioredis.TimeoutError) as e:
            raise TransientError(f"redis: {e}") from e
        return [f"redis_keys:{deleted}"] if deleted else []


async def _scan_batches(redis: aioredis.Redis, pattern: str, count: int = 500) -> Any:
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=pattern, count=count):
        batch.append(key)
        if len(batch) >= count:
            yield batch
            batch = []
    if batch:
        yield batch
