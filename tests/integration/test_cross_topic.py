"""Work on one tenant arriving on two topics (tenants.backups and tenants.lifecycle) is
serialised: per-tenant advisory lock, one job per tenant, state checks."""

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.migration_files import load_migrations
from adapters.postgres.tenant_store import _TENANT_LOCK_CLASS
from contracts.events import BackupDue, RestoreRequested, TenantEraseRequested, TenantMigrationDue
from domain.job_ids import backup_id_for
from migrations import TENANT_DIR
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.lifecycle import fill_incompressible, running_job, watch_concurrency
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def folder(settings: Settings, log_dir: Path, pg: asyncpg.Connection, tenants: TenantIds,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """Two slow backup workers (rate-limited), so there is time to interleave."""
    mine = len(tenants.ids)
    where = tmp_path_factory.mktemp("cross")
    async with bk.backup_workers(settings, log_dir) as pool:
        env = {"TENANT_BACKUP_LOCAL_DIR": str(where),
               "TENANT_BACKUP_RATE_LIMIT_BYTES": str(256 * 1024),
               "TENANT_BACKUP_CHUNK_BYTES": str(64 * 1024)}
        # Two runners: with one, a second job of the tenant could never run alongside anyway.
        await bk.gather(pool.start("cross", env), pool.start("cross-2", env))
        yield where
    await bk.forget_backups(pg, tenants.ids[mine:])


async def test_erase_during_a_backup_waits_for_it_then_erases_it(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds, settings: Settings,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await fill_incompressible(pg, tenant_id, 1_500)  # ~1 MB: ~4 s at the rate limit
    async with watch_concurrency(settings.pg_dsn.get_secret_value(), tenant_id) as samples:
        due = await bk.send(publisher, bk.envelope(BackupDue(tenant_id=tenant_id)))
        await running_job(pg, backup_id_for(due.id))
        erase = await bk.send(publisher, bk.envelope(TenantEraseRequested(tenant_id=tenant_id)))
        got = await results.all_of([due.id, erase.id], 90)

    backup, erased = got[due.id], got[erase.id]
    # The backup was running when the erase arrived: the erase job waits for it to end, so the
    # backup completes (it is not cut short by a dropped schema) and is answered first ...
    assert backup.type == "BackupCompleted", backup.data
    assert erased.type == "TenantErased", erased.data
    assert max(samples) == 1, f"two jobs of the tenant ran at once: {samples}"
    order = [e.causationid for e in results.seen if e.causationid in (due.id, erase.id)]
    assert order == [due.id, erase.id], order
    # ... then it goes with the tenant: counted by the erase, catalogue and artifact gone.
    assert erased.data["erased"].count("backups:1") == 1, erased.data
    assert backup.data["uri"].startswith(folder.as_uri()), backup.data["uri"]
    assert not bk.local_path(backup.data["uri"]).exists()
    assert await bk.catalog(pg, tenant_id) == []
    assert not await pg.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1",
                                 f"{ns.tenant(tenant_id)}")


async def test_migration_during_a_restore_is_serialised(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds, settings: Settings,
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

    # The test holds the tenant's registry row, which the restore's transaction updates last:
    # the restore then sits inside its transaction, holding the tenant's lock, for as long as
    # the test needs to see the migration arrive and wait behind it.
    holder = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute(f"SELECT 1 FROM {ns.CONTROL}.tenants WHERE tenant_id = $1"
                             " FOR UPDATE", tenant_id)
        restore = await bk.send(publisher, bk.envelope(RestoreRequested(tenant_id=tenant_id)))
        await wait_until(lambda: _tenant_lock(pg, tenant_id, granted=True), 60,
                         what="the restore holding the tenant's lock")
        migrate = await bk.send(publisher, bk.envelope(TenantMigrationDue(
            tenant_id=tenant_id, target_version=2, rollout_id="test-cross")))
        await wait_until(lambda: _tenant_lock(pg, tenant_id, granted=False), 60,
                         what="the migration waiting for the restore's lock")
        # Overlap proven: the migration is waiting while the restore job runs under its lease.
        assert await pg.fetchval(
            f"SELECT status FROM {ns.CONTROL}.backup_jobs WHERE cause_id = $1",
            restore.id) == "running"
        assert results.caused_by(restore.id) == [] and results.caused_by(migrate.id) == []
        await hold.rollback()
        got = await results.all_of([restore.id, migrate.id], 90)
    finally:
        await holder.close()

    assert got[restore.id].type == "RestoreCompleted", got[restore.id].data
    assert got[migrate.id].type == "TenantMigrated", got[migrate.id].data
    assert await pg.fetchval(f"SELECT schema_version FROM {ns.CONTROL}.tenants"
                             " WHERE tenant_id = $1", tenant_id) == 2
    assert await pg.fetchval(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = $1"
        " AND table_name = 'documents' AND column_name = 'tags'", f"{ns.tenant(tenant_id)}")
    assert await bk.user_names(pg, tenant_id) == ["backed_up"]


async def _tenant_lock(pg: asyncpg.Connection, tenant_id: str, *, granted: bool) -> bool:
    """Whether some backend holds (``granted``) or waits for the tenant's advisory lock."""
    return bool(await pg.fetchval(
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid"
        " AND objsubid = 2 AND objid::bigint = (hashtext($2)::bigint & 4294967295)"
        " AND granted = $3", _TENANT_LOCK_CLASS, tenant_id, granted))
