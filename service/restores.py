"""Restores and restore drills.

Verify, then execute: the still-encrypted artifact is spooled to a private file while its sha256
is computed, and only an artifact matching the catalog is decrypted and restored — no byte of an
unverified one reaches PostgreSQL. The restored SQL runs in psql logged in as the restore role
(adapters/postgres/restore_swap.py), never as the service role.

A restore swaps exactly once: one psql transaction takes the tenant's lock, renames the live
schema out of the way (fenced on the job's lease), runs pg_restore's script, and records the swap
on the job (fenced again, against the clock) before COMMIT. A retry after a committed swap
(e.g. the forward migration timed out) resumes after it. The old schema is kept until a grace
period ends.
"""

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from adapters.backup_targets.base import BackupTarget
from adapters.dump_pipeline import dsn_password, restore_sql, verified_spool, with_login
from adapters.postgres.restore_swap import (
    restore_role_name,
    restore_role_password,
    swap_in_sql,
    swap_out_sql,
)
from adapters.postgres.tenant_store import tenant_lock_sql
from adapters.psql import PsqlTransaction
from contracts.events import RestoreCompleted
from domain.errors import PermanentError
from domain.jobs import CatalogRow, Job
from domain.lifecycle import TenantStatus
from domain.migrations import Migration, plan_migrations
from service.ports import BackupKeyring, RestoreDatabase
from service.unit_of_work import UnitOfWorkFactory

__all__ = ["Restorer", "restore_role_name"]

log = structlog.get_logger(__name__)


class Restorer:
    def __init__(
        self,
        *,
        dsn: str,
        uows: UnitOfWorkFactory,
        keyring: BackupKeyring,
        database: RestoreDatabase,
        target: BackupTarget,
        migrations: Sequence[Migration],
        grace_s: float,
        chunk_bytes: int,
        control_schema: str,
        migration_lock_timeout_ms: int,
        migration_statement_timeout_ms: int,
        spool_dir: Path | None = None,
    ) -> None:
        #: the constructor's arguments, e.g. for a variant of this restorer in a test
        self.arguments: dict[str, Any] = {
            k: v for k, v in locals().items() if k not in ("self", "__class__")
        }
        self._dsn, self._uows, self._keyring, self._db = dsn, uows, keyring, database
        self._target, self._migrations = target, list(migrations)
        self._grace_s = grace_s
        self._chunk = chunk_bytes
        self._control = control_schema
        self._timeouts = (migration_lock_timeout_ms, migration_statement_timeout_ms)
        self._spool_dir = spool_dir
        self._role: str | None = None

    async def _resolve(self, tenant_id: str, backup_id: str) -> tuple[CatalogRow, str, int]:
        async with self._uows("restore preparation") as uow:
            record = await uow.tenants.get(tenant_id)
            if record is None or record.status == TenantStatus.ERASED:
                raise PermanentError("unknown_tenant", tenant_id)
            if record.status == TenantStatus.ERASING:  # the cut-off holds: no data comes back
                raise PermanentError("erasing", tenant_id)
            backup = await uow.jobs.backup(tenant_id, backup_id)
            if backup is None:
                raise PermanentError("backup_not_found", backup_id)
        identity = await self._keyring.identity(tenant_id)
        if identity is None:
            raise PermanentError("key_destroyed", "the tenant's backup key no longer exists")
        return backup, identity, record.schema_version

    async def restore(self, job: Job, owner: str) -> RestoreCompleted:
        """Restore ``job``'s backup for a runner holding the job's lease as ``owner``."""
        async with self._uows("restore preparation") as uow:
            swapped = await uow.jobs.swap_of(job.job_id)
        if swapped is None:
            backup, identity, _ = await self._resolve(job.tenant_id, job.backup_id or "latest")
            replaced = f"replaced_{uuid.uuid4().hex[:16]}"
            prelude = "\n".join(
                [
                    tenant_lock_sql(job.tenant_id),
                    swap_out_sql(self._control, job.job_id, owner, replaced),
                ]
            )
            postlude = swap_in_sql(
                self._control, job.job_id, owner, replaced, backup.backup_id,
                backup.schema_version, self._grace_s,
            )
            await self._run(backup, identity, prelude, postlude)
            backup_id = backup.backup_id
            log.info("restore_swapped", backup_id=backup_id, replaced_schema=replaced)
        else:
            backup_id, replaced = swapped
            log.info("restore_resumed_after_swap", backup_id=backup_id, replaced_schema=replaced)
        version = await self._migrate_forward(job.tenant_id)
        log.info("restored", backup_id=backup_id, replaced_schema=replaced, version=version)
        return RestoreCompleted(tenant_id=job.tenant_id, backup_id=backup_id, schema_version=version)

    async def drill(self, tenant_id: str, backup_id: str = "latest") -> dict[str, object]:
        """Restore into a scratch database, compare row counts with the manifest, record it."""
        backup, identity, _ = await self._resolve(tenant_id, backup_id)
        manifest = json.loads(b"".join([c async for c in self._target.read(backup.manifest_key)]))
        scratch = f"tenant_drill_{uuid.uuid4().hex[:12]}"
        scratch_dsn = await self._db.create_scratch(scratch, await self._restore_role())
        report: dict[str, object] = {"backup_id": backup.backup_id, "tenant_id": tenant_id}
        try:
            await self._run(backup, identity, "", "", database=scratch_dsn)
            counts = await self._db.count_rows(
                scratch_dsn, manifest["schema"], list(manifest["row_counts"])
            )
            report.update(
                sha256_ok=True,  # _run refuses anything else before restoring a byte
                expected=manifest["row_counts"],
                restored=counts,
                ok=counts == manifest["row_counts"],
            )
        except PermanentError as e:
            report.update(ok=False, error=str(e))
        finally:
            await self._db.drop_scratch(scratch)
        async with self._uows("record the drill") as uow:
            await uow.jobs.record_drill(
                backup.backup_id, tenant_id, bool(report["ok"]), json.dumps(report)
            )
        return report

    async def drop_expired_replaced(self) -> list[str]:
        """Drop the schemas restores replaced whose grace period has ended, one per unit."""
        async with self._uows("expired replaced schemas") as uow:
            expired = await uow.jobs.expired_replaced()
        for schema in expired:
            async with self._uows(f"drop replaced {schema}") as uow:
                await uow.jobs.drop_replaced(schema)
        return expired

    async def _restore_role(self) -> str:
        if self._role is None:
            self._role = await self._db.restore_role()
        return self._role

    @property
    def _password(self) -> str:
        return dsn_password(self._dsn)

    async def _run(
        self,
        backup: CatalogRow,
        identity: str,
        prelude: str,
        postlude: str,
        database: str | None = None,
    ) -> None:
        """Verify the artifact, then restore it in one psql transaction as the restore role."""
        role = await self._restore_role()
        tag = f"tenant-restore-{uuid.uuid4().hex[:12]}"
        password = restore_role_password(self._password, role)
        dsn = with_login(database or self._dsn, role, password, tag)
        chunks = self._target.read(backup.artifact_key, self._chunk)
        async with verified_spool(chunks, backup.sha256, self._spool_dir) as spool:
            psql = PsqlTransaction(dsn)
            await psql.start(prelude)
            try:
                await restore_sql(spool, identity, psql.stream)
                await psql.finish(commit=True, postlude=postlude)
            except BaseException:
                await psql.kill()
                # A backend waiting on a lock does not notice its client died: end it now, so
                # nothing of this attempt outlives it (the role's connection check is the backstop).
                await self._db.terminate(role, tag)
                raise

    async def _migrate_forward(self, tenant_id: str) -> int:
        """A backup taken at version N restored into a service at M > N gets N+1..M applied."""
        lock_ms, statement_ms = self._timeouts
        async with self._uows(f"migrate {tenant_id} after restore") as uow:
            # As a rollout's migration: never block tenant traffic for long. A timeout is
            # transient, and the retry resumes here (the swap is recorded on the job).
            await uow.limit_time(lock_timeout_ms=lock_ms, statement_timeout_ms=statement_ms)
            await uow.tenants.lock(tenant_id)
            record = await uow.tenants.get(tenant_id)
            assert record is not None
            plan = plan_migrations(self._migrations, record.schema_version)
            if plan.is_noop:
                return record.schema_version
            await uow.tenants.migrate(tenant_id, plan.steps)
        return plan.target
