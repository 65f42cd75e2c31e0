"""Work on one tenant arriving on two topics (tenants.backups and tenants.lifecycle) is
serialised: per-tenant advisory lock, one job per tenant, state checks (issue 5)."""

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.migration_files import load_migrations
from contracts.events import BackupDue, RestoreRequested, TenantEraseRequested, TenantMigrationDue
from domain.backups import backup_id_for
from migrations import TENANT_DIR
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.lifecycle import fill_incompressible, running_job
from tests.support.stack import TenantIds

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def folder(settings: Settings, log_dir: Path, pg: asyncpg.Connection, tenants: TenantIds,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """A slow backup worker (rate-limited), so there is time to interleave."""
    mine = len(tenants.ids)
    where = tmp_path_factory.mktemp("cross")
    async with bk.backup_workers(settings, log_dir) as pool:
        await pool.start("cross", {"TENANT_BACKUP_LOCAL_DIR": str(where),
                                   "TENANT_BACKUP_RATE_LIMIT_BYTES": str(256 * 1024),
                                   "TENANT_BACKUP_CHUNK_BYTES": str(64 * 1024)})
        yield where
    await bk.forget_backups(pg, tenants.ids[mine:])


async def test_erase_during_a_backup_never_leaves_a_catalogued_backup(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await fill_incompressible(pg, tenant_id, 1_500)  # ~1 MB: ~4 s at the rate limit
    due = await bk.send(publisher, bk.envelope(BackupDue(tenant_id=tenant_id)))
    await running_job(pg, backup_id_for(due.id))

    erase = await bk.send(publisher, bk.envelope(TenantEraseRequested(tenant_id=tenant_id)))
    got = await results.all_of([due.id, erase.id], 90)

    backup, erased = got[due.id], got[erase.id]
    assert erased.type == "TenantErased", erased.data
    assert backup.type == "BackupCompleted" or (
        backup.type == "BackupFailed" and backup.data["reason"] == "unknown_tenant"), backup.data
    if backup.type == "BackupCompleted":  # it finished first, then went with the tenant
        bk.assert_ours(backup.data["uri"], folder.as_uri())
        assert not bk.local_path(backup.data["uri"]).exists()
        assert erased.data["erased"].count("backups:1") == 1
    assert await bk.catalog(pg, tenant_id) == []
    assert not await pg.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1",
                                 f"{ns.tenant(tenant_id)}")


async def test_migration_during_a_restore_is_serialised(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    first = [m for m in load_migrations(TENANT_DIR) if m.version == 1]
    async with pg.transaction():
        await ns.tenant_store().create(pg, tenant_id, "free", first)
    await bk.add_users(pg, tenant_id, ["backed_up"])
    done = await bk.backup(publisher, results, tenant_id)
    assert done.type == "BackupCompleted", done.data
    bk.assert_ours(done.data["uri"], folder.as_uri())
    await bk.add_users(pg, tenant_id, ["later"])

    restore = await bk.send(publisher, bk.envelope(RestoreRequested(tenant_id=tenant_id)))
    migrate = await bk.send(publisher, bk.envelope(TenantMigrationDue(
        tenant_id=tenant_id, target_version=2, rollout_id="test-cross")))
    got = await results.all_of([restore.id, migrate.id], 90)

    assert got[restore.id].type == "RestoreCompleted", got[restore.id].data
    assert got[migrate.id].type == "TenantMigrated", got[migrate.id].data
    assert await pg.fetchval(f"SELECT schema_version FROM {ns.CONTROL}.tenants"
                             " WHERE tenant_id = $1", tenant_id) == 2
    assert await pg.fetchval(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = $1"
        " AND table_name = 'documents' AND column_name = 'tags'", f"{ns.tenant(tenant_id)}")
    assert await bk.user_names(pg, tenant_id) == ["backed_up"]
