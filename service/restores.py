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

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import structlog

from adapters.age_keys import PostgresTenantKeys
from adapters.backup_targets.base import BackupTarget
from adapters.dump_pipeline import restore_sql, verified_spool, with_login
from adapters.migration_files import load_migrations
from adapters.postgres.backup_jobs import CatalogRow, Job, PostgresBackupJobs
from adapters.postgres.control_schema import ensure_extensions
from adapters.postgres.errors import translated
from adapters.postgres.restore_swap import (
    allow_restore_into,
    ensure_restore_role,
    restore_role_name,
    restore_role_password,
    swap_in_sql,
    swap_out_sql,
    terminate_sessions,
)
from adapters.postgres.tenant_store import PostgresTenantStore, tenant_lock_sql
from adapters.psql import PsqlTransaction
from contracts.events import RestoreCompleted
from domain.errors import PermanentError
from domain.lifecycle import TenantStatus
from domain.migrations import plan_migrations
from domain.tenant_ids import quote_ident
from migrations import TENANT_DIR

__all__ = ["Restorer", "restore_role_name"]

log = structlog.get_logger(__name__)


class Restorer:
    def __init__(
        self,
        *,
        dsn: str,
        pool: asyncpg.Pool,
        store: PostgresTenantStore,
        keys: PostgresTenantKeys,
        jobs: PostgresBackupJobs,
        target: BackupTarget,
        master_identity_file: Path,
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
        self._dsn, self._pool, self._store, self._keys = dsn, pool, store, keys
        self._jobs, self._target = jobs, target
        self._master = master_identity_file
        self._grace_s = grace_s
        self._chunk = chunk_bytes
        self._control = control_schema
        self._timeouts = (migration_lock_timeout_ms, migration_statement_timeout_ms)
        self._spool_dir = spool_dir
        self._role: str | None = None

    async def _resolve(self, tenant_id: str, backup_id: str) -> tuple[CatalogRow, str, int]:
        async with self._pool.acquire() as conn:
            with translated("restore preparation"):
                record = await self._store.get(conn, tenant_id)
                if record is None or record.status == TenantStatus.ERASED:
                    raise PermanentError("unknown_tenant", tenant_id)
                if record.status == TenantStatus.ERASING:  # the cut-off holds: no data comes back
                    raise PermanentError("erasing", tenant_id)
                backup = await self._jobs.backup(conn, tenant_id, backup_id)
                if backup is None:
                    raise PermanentError("backup_not_found", backup_id)
                identity = await self._keys.identity(conn, tenant_id, self._master)
        if identity is None:
            raise PermanentError("key_destroyed", "the tenant's backup key no longer exists")
        return backup, identity, record.schema_version

    async def restore(self, job: Job, owner: str) -> RestoreCompleted:
        """Restore ``job``'s backup for a runner holding the job's lease as ``owner``."""
        async with self._pool.acquire() as conn:
            with translated("restore preparation"):
                swapped = await self._jobs.swap_of(conn, job.job_id)
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
        async with self._pool.acquire() as conn:
            with translated("drill database"):
                await conn.execute(f"CREATE DATABASE {quote_ident(scratch)}")
                await allow_restore_into(conn, scratch, await self._restore_role())
        scratch_dsn = self._dsn.rsplit("/", 1)[0] + "/" + scratch
        report: dict[str, object] = {"backup_id": backup.backup_id, "tenant_id": tenant_id}
        try:
            conn = await asyncpg.connect(scratch_dsn)
            try:
                await ensure_extensions(conn)
            finally:
                await conn.close()
            await self._run(backup, identity, "", "", database=scratch_dsn)
            conn = await asyncpg.connect(scratch_dsn)
            try:
                counts = {
                    t: int(
                        await conn.fetchval(
                            f"SELECT count(*) FROM {quote_ident(manifest['schema'])}.{quote_ident(t)}"
                        )
                    )
                    for t in manifest["row_counts"]
                }
            finally:
                await conn.close()
            report.update(
                sha256_ok=True,  # _run refuses anything else before restoring a byte
                expected=manifest["row_counts"],
                restored=counts,
                ok=counts == manifest["row_counts"],
            )
        except PermanentError as e:
            report.update(ok=False, error=str(e))
        finally:
            async with self._pool.acquire() as conn:
                await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(scratch)} WITH (FORCE)")
        async with self._pool.acquire() as conn:
            await self._jobs.record_drill(
                conn, backup.backup_id, tenant_id, bool(report["ok"]), json.dumps(report)
            )
        return report

    async def drop_expired_replaced(self) -> list[str]:
        dropped = []
        async with self._pool.acquire() as conn:
            for schema in await self._jobs.expired_replaced(conn):
                async with conn.transaction():
                    await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
                    await self._jobs.forget_replaced(conn, schema)
                dropped.append(schema)
        return dropped

    async def _restore_role(self) -> str:
        if self._role is None:
            async with self._pool.acquire() as conn:
                with translated("restore role"):
                    self._role = await ensure_restore_role(conn, self._control, self._password)
        return self._role

    @property
    def _password(self) -> str:
        return unquote(urlsplit(self._dsn).password or "")

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
                await self._terminate(role, tag)
                raise

    async def _terminate(self, role: str, tag: str) -> None:
        try:
            async with asyncio.timeout(5):
                async with self._pool.acquire() as conn:
                    await terminate_sessions(conn, role, tag)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            log.warning("restore_session_not_terminated", error=repr(e))

    async def _schema(self, tenant_id: str) -> str:
        async with self._pool.acquire() as conn:
            record = await self._store.get(conn, tenant_id)
        assert record is not None
        return record.schema_name

    async def _migrate_forward(self, tenant_id: str) -> int:
        """A backup taken at version N restored into a service at M > N gets N+1..M applied."""
        lock_ms, statement_ms = self._timeouts
        async with self._pool.acquire() as conn, conn.transaction():
            with translated(f"migrate {tenant_id} after restore"):
                # As a rollout's migration: never block tenant traffic for long. A timeout is
                # transient, and the retry resumes here (the swap is recorded on the job).
                await conn.execute(f"SET LOCAL lock_timeout = {int(lock_ms)}")
                await conn.execute(f"SET LOCAL statement_timeout = {int(statement_ms)}")
                await conn.execute(tenant_lock_sql(tenant_id))
                record = await self._store.get(conn, tenant_id)
                assert record is not None
                plan = plan_migrations(load_migrations(TENANT_DIR), record.schema_version)
                if plan.is_noop:
                    return record.schema_version
                await self._store.migrate(conn, tenant_id, list(plan.steps))
            return plan.target
