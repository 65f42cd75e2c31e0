"""Restore promises of the README not covered elsewhere: an unknown backup id answers
RestoreFailed and changes nothing; the replaced schema is kept for the grace period and then
dropped; a drill whose row counts differ fails and is recorded; an erase drops the schemas
restores replaced."""

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
from contracts.events import TenantEraseRequested
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT

pytestmark = pytest.mark.stack

GRACE_S = 3600  # FAST_BACKUP_ENV's TENANT_RESTORE_GRACE_S


@pytest.fixture(scope="module")
async def restorer(settings: Settings, log_dir: Path, pg: asyncpg.Connection, tenants: TenantIds,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """Our backup worker (it has the master identity: it restores and erases); its folder."""
    mine = len(tenants.ids)
    folder = tmp_path_factory.mktemp("restore-promises")
    async with bk.backup_workers(settings, log_dir) as pool:
        await pool.start("restorer", {"TENANT_BACKUP_LOCAL_DIR": str(folder),
                                      "TENANT_RESTORE_GRACE_S": str(GRACE_S)})
        yield folder
    await bk.forget_backups(pg, tenants.ids[mine:])


async def _replaced(pg: asyncpg.Connection, tenant_id: str) -> list[asyncpg.Record]:
    return list(await pg.fetch(
        "SELECT r.schema_name, r.drop_after, now() AS now,"
        " EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = r.schema_name) AS present"
        f" FROM {ns.CONTROL}.replaced_schemas r WHERE r.tenant_id = $1", tenant_id))


async def _restored_once(publisher: KafkaEventPublisher, results: ResultLog,
                         pg: asyncpg.Connection, folder: Path, tenant_id: str) -> str:
    """Provision, back up ['kept'], add ['later'], restore; the replaced schema's name."""
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["kept"])
    done = await bk.backup(publisher, results, tenant_id)
    assert done.type == "BackupCompleted", done.data
    assert done.data["uri"].startswith(folder.as_uri()), done.data["uri"]
    await bk.add_users(pg, tenant_id, ["later"])
    restored = await bk.restore(publisher, results, tenant_id)
    assert restored.type == "RestoreCompleted", restored.data
    assert await bk.user_names(pg, tenant_id) == ["kept"]
    (row,) = await _replaced(pg, tenant_id)
    assert row["present"], row
    return str(row["schema_name"])


async def test_restore_of_an_unknown_backup_id_fails_and_changes_nothing(
    restorer: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["kept"])
    done = await bk.backup(publisher, results, tenant_id)
    assert done.type == "BackupCompleted", done.data
    await bk.add_users(pg, tenant_id, ["live"])

    failed = await bk.restore(publisher, results, tenant_id, backup_id="no-such-backup")

    assert failed.type == "RestoreFailed", failed.data
    assert (failed.data["backup_id"], failed.data["reason"]) == ("no-such-backup",
                                                                 "backup_not_found")
    assert await bk.user_names(pg, tenant_id) == ["kept", "live"]
    assert await _replaced(pg, tenant_id) == []
    assert [j["kind"] for j in await bk.jobs_of(pg, tenant_id)] == ["backup"]


async def test_the_replaced_schema_is_kept_for_the_grace_period_then_dropped(
    restorer: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    replaced = await _restored_once(publisher, results, pg, restorer, tenant_id)
    (row,) = await _replaced(pg, tenant_id)
    # Kept: due no earlier than the grace period from now (minus what the restore took).
    assert (row["drop_after"] - row["now"]).total_seconds() > GRACE_S - 300, row

    # The grace period passes (moved, not waited for): the idle runner's housekeeping drops it.
    await pg.execute(f"UPDATE {ns.CONTROL}.replaced_schemas SET drop_after = now()"
                     " WHERE schema_name = $1", replaced)

    async def dropped() -> bool:
        return not await _replaced(pg, tenant_id) and not await pg.fetchval(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1", replaced)

    await wait_until(dropped, 60, what=f"{replaced} dropped after its grace period")
    assert await bk.user_names(pg, tenant_id) == ["kept"]


async def test_an_erase_drops_the_schemas_restores_replaced(
    restorer: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    replaced = await _restored_once(publisher, results, pg, restorer, tenant_id)

    erased = await bk.ask(publisher, results, TenantEraseRequested(tenant_id=tenant_id), 90)

    assert erased.type == "TenantErased", erased.data
    assert "replaced_schemas:1" in erased.data["erased"], erased.data
    assert not await pg.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", replaced)
    assert await _replaced(pg, tenant_id) == []


async def test_a_drill_whose_row_counts_differ_fails_and_is_recorded(
    restorer: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["x", "y"])
    done = await bk.backup(publisher, results, tenant_id)
    assert done.type == "BackupCompleted", done.data
    backup_id = done.data["backup_id"]
    # The manifest promises a row the dump does not hold: the drill must notice.
    artifact = bk.local_path(done.data["uri"])
    manifest_file = artifact.parent / f"{backup_id}.manifest.json"
    manifest = json.loads(manifest_file.read_text())
    assert manifest["row_counts"]["users"] == 2, manifest
    manifest["row_counts"]["users"] = 3
    manifest_file.write_text(json.dumps(manifest))

    drill = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tenantctl.cli", "backup", "verify", tenant_id],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TENANT_BACKUP_LOCAL_DIR": str(restorer)},
    )

    assert drill.returncode != 0, drill.stdout + drill.stderr
    report = json.loads(drill.stdout)
    assert report["ok"] is False and report["sha256_ok"] is True, report
    assert (report["expected"]["users"], report["restored"]["users"]) == (3, 2), report
    recorded = await pg.fetchval(
        f"SELECT ok FROM {ns.CONTROL}.restore_drills WHERE backup_id = $1", backup_id)
    assert recorded is False
    (row,) = await bk.catalog(pg, tenant_id)
    assert row["last_drill_ok"] is False and row["last_drill_at"] is not None
