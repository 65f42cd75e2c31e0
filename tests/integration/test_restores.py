"""Restores: atomic swap, the old schema kept out of the tenant's reach, RLS and grants back,
forward migration of an old backup, tampered artifacts, suspended tenants, drills."""

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.migration_files import load_migrations
from contracts.events import TenantDeactivated
from migrations import TENANT_DIR
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import TenantIds
from tests.support.workers import REPO_ROOT, WorkerProcess

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def restorer(settings: Settings, log_dir: Path, pg: asyncpg.Connection, tenants: TenantIds,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """Our backup worker (it has the master identity, so it restores too); yields its folder."""
    mine = len(tenants.ids)
    folder = tmp_path_factory.mktemp("restores")
    async with bk.backup_workers(settings, log_dir) as pool:
        worker: WorkerProcess = await pool.start("restorer", {"TENANT_BACKUP_LOCAL_DIR": str(folder)})
        assert worker.running
        yield folder
    await bk.forget_backups(pg, tenants.ids[mine:])


async def _backed_up(publisher: KafkaEventPublisher, results: ResultLog, folder: Path,
                     tenant_id: str) -> str:
    done = await bk.backup(publisher, results, tenant_id)
    assert done.type == "BackupCompleted", done.data
    bk.assert_ours(done.data["uri"], folder.as_uri())
    return str(done.data["backup_id"])


async def _policies(pg: asyncpg.Connection, schema: str) -> dict[str, bool]:
    rows = await pg.fetch(
        "SELECT c.relname, c.relrowsecurity, EXISTS (SELECT 1 FROM pg_policy p"
        " WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation') AS has_policy"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind = 'r'", schema)
    return {r["relname"]: r["relrowsecurity"] and r["has_policy"] for r in rows}


async def test_restore_brings_back_the_backup_and_keeps_the_old_schema_unreachable(
    restorer: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    schema = f"{ns.tenant(tenant_id)}"
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["alice", "bob"])
    backup_id = await _backed_up(publisher, results, restorer, tenant_id)
    await bk.as_tenant(pg, tenant_id, f'DELETE FROM "{schema}".users WHERE display_name = $1',
                       "alice")
    await bk.add_users(pg, tenant_id, ["carol"])

    result = await bk.restore(publisher, results, tenant_id)

    assert result.type == "RestoreCompleted", result.data
    assert result.data == {"tenant_id": tenant_id, "backup_id": backup_id, "schema_version": 2}
    assert await bk.user_names(pg, tenant_id) == ["alice", "bob"]
    (replaced,) = await pg.fetch(
        f"SELECT schema_name FROM {ns.CONTROL}.replaced_schemas WHERE tenant_id = $1", tenant_id)
    old = replaced["schema_name"]
    assert old.startswith("replaced_")
    assert await pg.fetchval(f'SELECT count(*) FROM "{old}".users') == 2  # bob, carol
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await bk.as_tenant(pg, tenant_id, f'SELECT * FROM "{old}".users')
    # The restored tables carry their RLS policy and grants: the tenant reads and writes them.
    assert await _policies(pg, schema) == {"users": True, "projects": True, "documents": True}
    assert len(await bk.as_tenant(pg, tenant_id, f'SELECT * FROM "{schema}".users')) == 2
    await bk.add_users(pg, tenant_id, ["dave"])
    assert await bk.app_is_member(pg, tenant_id)


async def test_backup_at_version_1_is_migrated_forward_on_restore(
    restorer: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    first = [m for m in load_migrations(TENANT_DIR) if m.version == 1]
    async with pg.transaction():
        await ns.tenant_store().create(pg, tenant_id, "free", first)
    await bk.add_users(pg, tenant_id, ["old"])
    backup_id = await _backed_up(publisher, results, restorer, tenant_id)
    (row,) = await bk.catalog(pg, tenant_id)
    assert row["schema_version"] == 1

    result = await bk.restore(publisher, results, tenant_id, backup_id)

    assert result.type == "RestoreCompleted", result.data
    assert result.data["schema_version"] == 2
    assert await pg.fetchval(
        f"SELECT schema_version FROM {ns.CONTROL}.tenants WHERE tenant_id = $1", tenant_id) == 2
    assert await pg.fetchval(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = $1"
        " AND table_name = 'documents' AND column_name = 'tags'", f"{ns.tenant(tenant_id)}") == "ARRAY"
    assert await bk.user_names(pg, tenant_id) == ["old"]


async def test_tampered_artifact_fails_and_leaves_the_live_schema_alone(
    restorer: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["kept"])
    backup_id = await _backed_up(publisher, results, restorer, tenant_id)
    (row,) = await bk.catalog(pg, tenant_id)
    artifact = bk.local_path(row["uri"])
    blob = bytearray(artifact.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    artifact.write_bytes(bytes(blob))
    await bk.add_users(pg, tenant_id, ["after"])
    oid = await pg.fetchval("SELECT oid FROM pg_namespace WHERE nspname = $1", f"{ns.tenant(tenant_id)}")

    result = await bk.restore(publisher, results, tenant_id, backup_id)

    assert result.type == "RestoreFailed", result.data
    assert await bk.user_names(pg, tenant_id) == ["after", "kept"]
    assert await pg.fetchval(
        "SELECT oid FROM pg_namespace WHERE nspname = $1", f"{ns.tenant(tenant_id)}") == oid
    assert await pg.fetch(
        f"SELECT 1 FROM {ns.CONTROL}.replaced_schemas WHERE tenant_id = $1", tenant_id) == []


async def test_restore_while_suspended_keeps_the_tenant_suspended(
    restorer: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["one"])
    await _backed_up(publisher, results, restorer, tenant_id)
    suspended = await bk.ask(publisher, results, TenantDeactivated(tenant_id=tenant_id))
    assert suspended.type == "TenantSuspended"

    result = await bk.restore(publisher, results, tenant_id)

    assert result.type == "RestoreCompleted", result.data
    assert await pg.fetchval(
        f"SELECT status FROM {ns.CONTROL}.tenants WHERE tenant_id = $1", tenant_id) == "suspended"
    assert not await bk.app_is_member(pg, tenant_id)
    assert await bk.user_names(pg, tenant_id) == ["one"]


async def test_backup_verify_drill_reports_and_is_recorded(
    restorer: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["x", "y", "z"])
    backup_id = await _backed_up(publisher, results, restorer, tenant_id)

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tenantctl.cli", "backup", "verify", tenant_id],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TENANT_BACKUP_LOCAL_DIR": str(restorer)},
    )

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["sha256_ok"] is True
    assert report["backup_id"] == backup_id
    assert report["restored"] == report["expected"] == {"documents": 0, "projects": 0, "users": 3}
    drill = await pg.fetchrow(
        f"SELECT ok, report FROM {ns.CONTROL}.restore_drills WHERE backup_id = $1", backup_id)
    assert drill is not None and drill["ok"] is True
    (row,) = await bk.catalog(pg, tenant_id)
    assert row["last_drill_ok"] is True and row["last_drill_at"] is not None
