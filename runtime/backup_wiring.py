"""Builds the backup and restore parts from settings, for workers and for tenantctl alike."""

from dataclasses import dataclass

import asyncpg

from adapters.age_keys import PostgresTenantKeys
from adapters.backup_targets.base import BackupTarget
from adapters.dump_pipeline import dsn_password
from adapters.migration_files import load_migrations
from adapters.postgres.backup_jobs import PostgresBackupJobs
from adapters.postgres.backup_snapshots import PostgresBackupKeyring, PostgresBackupSnapshots
from adapters.postgres.outbox import PostgresOutbox
from adapters.postgres.restore_database import PostgresRestoreDatabase
from adapters.postgres.tenant_store import PostgresTenantStore
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWorks
from domain.backups import RetentionPolicy
from migrations import TENANT_DIR
from runtime.backup_target import backup_target
from runtime.settings import Settings, SettingsError
from service.backups import BackupTaker
from service.restores import Restorer


@dataclass
class BackupParts:
    store: PostgresTenantStore
    jobs: PostgresBackupJobs
    keys: PostgresTenantKeys
    target: BackupTarget
    taker: BackupTaker
    restorer: Restorer | None  # only where the master identity file is given


async def build_backup_parts(settings: Settings, pool: asyncpg.Pool) -> BackupParts:
    s = settings
    if not s.backup_master_recipient:
        raise SettingsError(
            "invalid settings:\n  TENANT_BACKUP_MASTER_RECIPIENT: required for backups"
        )
    store = s.names.tenant_store()
    jobs = PostgresBackupJobs(s.names.control_schema)
    keys = PostgresTenantKeys(s.names.control_schema, s.backup_master_recipient)
    async with pool.acquire() as conn:
        pinned = await keys.pin_master(conn)
    if pinned is not None:
        raise SettingsError(
            "invalid settings:\n  TENANT_BACKUP_MASTER_RECIPIENT: differs from the master this"
            f" database's tenant keys are wrapped to ({pinned[:16]}...)"
        )
    target = await backup_target(s)
    dsn = s.pg_dsn.get_secret_value()
    outbox = PostgresOutbox(s.names.control_schema, s.result_content_mode)
    uows = PostgresUnitOfWorks(pool, PostgresStores.of(s.names.control_schema, store, outbox))
    keyring = PostgresBackupKeyring(pool, keys, s.backup_master_identity_file)
    taker = BackupTaker(
        dsn=dsn,
        uows=uows,
        keyring=keyring,
        snapshots=PostgresBackupSnapshots(pool, s.backup_count_budget_ms),
        target=target,
        archive_recipients=s.erase_archive_recipients,
        retention={plan: RetentionPolicy(*spec) for plan, spec in s.backup_retention.items()},
        zstd_level=s.backup_zstd_level,
        zstd_threads=s.backup_zstd_threads,
        chunk_bytes=s.backup_chunk_bytes,
        rate_limit=s.backup_rate_limit_bytes,
    )
    restorer = None
    if s.backup_master_identity_file is not None:
        restorer = Restorer(
            dsn=dsn,
            uows=uows,
            keyring=keyring,
            database=PostgresRestoreDatabase(
                pool, dsn, s.names.control_schema, dsn_password(dsn)
            ),
            target=target,
            migrations=load_migrations(TENANT_DIR),
            grace_s=s.restore_grace_s,
            chunk_bytes=s.backup_chunk_bytes,
            control_schema=s.names.control_schema,
            migration_lock_timeout_ms=s.migration_lock_timeout_ms,
            migration_statement_timeout_ms=s.migration_statement_timeout_ms,
            spool_dir=s.restore_spool_dir,
        )
    return BackupParts(store, jobs, keys, target, taker, restorer)
