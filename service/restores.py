"""Restores and restore drills.

A restore is one transaction in psql: BEGIN, take the tenant's lock, rename the live schema out
of the way, run pg_restore's script (which recreates the schema, its grants and RLS policies),
and COMMIT only if the artifact's sha256 matched the catalog. Either the restored schema
replaces the old one or nothing changed. The old schema is kept until a grace period ends.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import structlog

from adapters.age_keys import PostgresTenantKeys
from adapters.backup_targets.base import BackupTarget
from adapters.dump_pipeline import restore_sql
from adapters.migration_files import load_migrations
from adapters.postgres.backup_jobs import CatalogRow, Job, PostgresBackupJobs
from adapters.postgres.control_schema import ensure_extensions
from adapters.postgres.errors import translated
from adapters.postgres.tenant_store import PostgresTenantStore, tenant_lock_sql
from adapters.psql import PsqlTransaction
from contracts.events import RestoreCompleted
from domain.errors import PermanentError
from domain.lifecycle import TenantStatus
from domain.migrations import plan_migrations
from domain.tenant_ids import quote_ident, quote_literal
from migrations import TENANT_DIR

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
    ) -> None:
        self._dsn, self._pool, self._store, self._keys = dsn, pool, store, keys
        self._jobs, self._target = jobs, target
        self._master = master_identity_file
        self._grace = timedelta(seconds=grace_s)
        self._chunk = chunk_bytes

    async def _resolve(self, tenant_id: str, backup_id: str) -> tuple[CatalogRow, str, int]:
        async with self._pool.acquire() as conn:
            with translated("restore preparation"):
                record = await self._store.get(conn, tenant_id)
                if record is None or record.status == TenantStatus.ERASED:
                    raise PermanentError("unknown_tenant", tenant_id)
                backup = await self._jobs.backup(conn, tenant_id, backup_id)
                if backup is None:
                    raise PermanentError("backup_not_found", backup_id)
                identity = await self._keys.identity(conn, tenant_id, self._master)
        if identity is None:
            raise PermanentError("key_destroyed", "the tenant's backup key no longer exists")
        return backup, identity, record.schema_version

    async def restore(self, job: Job) -> RestoreCompleted:
        backup, identity, _ = await self._resolve(job.tenant_id, job.backup_id or "latest")
        record_schema = await self._schema(job.tenant_id)
        replaced = f"replaced_{uuid.uuid4().hex[:16]}"
        prelude = "\n".join(
            [
                tenant_lock_sql(job.tenant_id),
                f"ALTER SCHEMA {quote_ident(record_schema)} RENAME TO {quote_ident(replaced)};",
                # The old copy stays for the grace period, out of the tenant's reach.
                f"REVOKE ALL ON SCHEMA {quote_ident(replaced)} FROM PUBLIC,"
                f" {quote_ident(self._store.role_of(job.tenant_id))};",
            ]
        )
        postlude = "\n".join(
            [
                f"UPDATE {self._store.table} SET schema_version = {int(backup.schema_version)},"
                f" updated_at = now() WHERE tenant_id = {quote_literal(job.tenant_id)};",
                f"INSERT INTO {self._jobs.replaced} (schema_name, tenant_id, drop_after) VALUES"
                f" ({quote_literal(replaced)}, {quote_literal(job.tenant_id)},"
                f" {quote_literal((datetime.now(UTC) + self._grace).isoformat())});",
            ]
        )
        await self._run(backup, identity, prelude, postlude)
        version = await self._migrate_forward(job.tenant_id)
        log.info("restored", backup_id=backup.backup_id, replaced_schema=replaced, version=version)
        return RestoreCompleted(
            tenant_id=job.tenant_id, backup_id=backup.backup_id, schema_version=version
        )

    async def drill(self, tenant_id: str, backup_id: str = "latest") -> dict[str, object]:
        """Restore into a scratch database, compare row counts with the manifest, record it."""
        backup, identity, _ = await self._resolve(tenant_id, backup_id)
        manifest = json.loads(b"".join([c async for c in self._target.read(backup.manifest_key)]))
        scratch = f"tenant_drill_{uuid.uuid4().hex[:12]}"
        async with self._pool.acquire() as conn:
            with translated("drill database"):
                await conn.execute(f"CREATE DATABASE {quote_ident(scratch)}")
        scratch_dsn = self._dsn.rsplit("/", 1)[0] + "/" + scratch
        report: dict[str, object] = {"backup_id": backup.backup_id, "tenant_id": tenant_id}
        try:
            conn = await asyncpg.connect(scratch_dsn)
            try:
                await ensure_extensions(conn)
            finally:
                await conn.close()
            sha = await self._run(backup, identity, "", "", dsn=scratch_dsn)
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
                sha256_ok=sha == backup.sha256,
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

    async def _run(
        self, backup: CatalogRow, identity: str, prelude: str, postlude: str, dsn: str | None = None
    ) -> str:
        psql = PsqlTransaction(dsn or self._dsn)
        await psql.start(prelude)
        try:
            stats = await restore_sql(
                self._target.read(backup.artifact_key, self._chunk), identity, psql.stream
            )
            if stats.sha256 != backup.sha256:
                await psql.finish(commit=False)
                raise PermanentError("checksum_mismatch", f"artifact sha256 {stats.sha256}")
            await psql.finish(commit=True, postlude=postlude)
            return stats.sha256
        except BaseException:
            await psql.kill()
            raise

    async def _schema(self, tenant_id: str) -> str:
        async with self._pool.acquire() as conn:
            record = await self._store.get(conn, tenant_id)
        assert record is not None
        return record.schema_name

    async def _migrate_forward(self, tenant_id: str) -> int:
        """A backup taken at version N restored into a service at M > N gets N+1..M applied."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(tenant_lock_sql(tenant_id))
            record = await self._store.get(conn, tenant_id)
            assert record is not None
            plan = plan_migrations(load_migrations(TENANT_DIR), record.schema_version)
            if plan.is_noop:
                return record.schema_version
            with translated(f"migrate {tenant_id} after restore"):
                await self._store.migrate(conn, tenant_id, list(plan.steps))
            return plan.target
