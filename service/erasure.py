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

import structlog

from contracts.events import TenantErased
from domain.errors import PermanentError
from domain.job_ids import archive_id_for
from domain.jobs import Job
from domain.lifecycle import TenantStatus, doomed_backups
from service.backups import BackupTaker
from service.ports import TenantKeyspace
from service.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)


class Eraser:
    def __init__(
        self,
        *,
        uows: UnitOfWorkFactory,
        keyspace: TenantKeyspace,
        taker: BackupTaker,
        drop_batch: int,
    ) -> None:
        self._uows, self._keyspace, self._taker = uows, keyspace, taker
        self._batch = drop_batch

    async def erase(self, job: Job, archive: bool, progress: Any) -> TenantErased:
        """Run (or finish) the tenant's erase; any erase job of the tenant, retried or not,
        performs the same erase: the archive decided by the first accepted request, read from
        the registry, is taken once, kept, and reported by every one of them.

        ``archive`` matters only for a tenant whose registry row recorded no erase (the job
        was queued by a build that did not record it).
        """
        tenant_id = job.tenant_id
        erased: list[str] = []
        async with self._uows(f"erase {tenant_id}") as uow:
            record = await uow.tenants.get(tenant_id)
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
        deleted = await self._keyspace.unlink_all(tenant_id)
        erased += [f"redis_keys:{deleted}"] if deleted else []
        async with self._uows(f"erase {tenant_id}") as uow:
            await uow.tenants.lock(tenant_id)
            if await uow.keys.destroy(tenant_id):
                erased.append("backup_key")
            rows = await uow.jobs.backups(tenant_id)
            doomed_ids = set(doomed_backups([r.backup_id for r in rows], archive_id))
            doomed = [r for r in rows if r.backup_id in doomed_ids]
            await uow.jobs.forget([r.backup_id for r in doomed])
            # The tenant's jobs still waiting are not cancelled here: each request must get
            # its one answer, and they do when they run (BackupFailed / RestoreFailed,
            # unknown_tenant; erase jobs TenantErased: the registry row is a tombstone now).
            await uow.tenants.tombstone(tenant_id)
        if doomed:
            erased.append(f"backups:{len(doomed)}")
        await self._taker.delete_artifacts(doomed)  # unreadable already: the key is gone
        log.info("tenant_erased", erased=erased, archive_backup_id=archive_id)
        return TenantErased(tenant_id=tenant_id, archive_backup_id=archive_id, erased=erased)

    async def _archive(
        self, job: Job, status: TenantStatus, archive_id: str, progress: Any
    ) -> bool:
        """The final archive, taken once under its fixed id; True when it is catalogued."""
        async with self._uows(f"erase {job.tenant_id} archive") as uow:
            if await uow.jobs.has_backup(job.tenant_id, archive_id):
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
        async with self._uows(f"erase {job.tenant_id} archive") as uow:
            await uow.jobs.catalogue(row)
        return True

    async def _drop_database_objects(self, tenant_id: str) -> list[str]:
        while True:  # batches keep each transaction far below max_locks_per_transaction
            async with self._uows(f"erase {tenant_id} tables") as uow:
                await uow.tenants.lock(tenant_id)
                tables = (await uow.tenants.tables(tenant_id))[: self._batch]
                if not tables:
                    break
                await uow.tenants.drop_tables(tenant_id, tables)
        async with self._uows(f"erase {tenant_id} schema") as uow:
            return await self._drop_schema_and_role(uow, tenant_id)

    @staticmethod
    async def _drop_schema_and_role(uow: UnitOfWork, tenant_id: str) -> list[str]:
        await uow.tenants.lock(tenant_id)
        await uow.tenants.revoke_access(tenant_id)
        # Schemas a restore replaced are the tenant's data too.
        replaced = await uow.jobs.replaced_of(tenant_id)
        for old in replaced:
            await uow.jobs.drop_replaced(old)
        dropped = await uow.tenants.drop_schema_and_role(tenant_id)
        return dropped + ([f"replaced_schemas:{len(replaced)}"] if replaced else [])
