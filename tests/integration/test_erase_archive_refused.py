"""An erase asking for an archive, on a worker with no TENANT_ERASE_ARCHIVE_RECIPIENTS, is
refused: no archive is ever encrypted to another key than the operators'."""

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

pytestmark = pytest.mark.stack


async def test_an_archive_is_refused_without_operator_recipients(
    settings: Settings, log_dir: Path, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds, tmp_path: Path,
) -> None:
    """A worker with no TENANT_ERASE_ARCHIVE_RECIPIENTS takes no archive to anyone else's key:
    TenantEraseFailed, nothing dropped, nothing catalogued; the tenant stays erasing."""
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["kept"])
    try:
        async with bk.backup_workers(settings, log_dir) as pool:
            await pool.start("no-recipients", {"TENANT_BACKUP_LOCAL_DIR": str(tmp_path),
                                               "TENANT_ERASE_ARCHIVE_RECIPIENTS": ""})
            failed = await bk.ask(publisher, results,
                                  TenantEraseRequested(tenant_id=tenant_id, archive=True), 90)
    finally:
        await bk.forget_backups(pg, [tenant_id])

    assert (failed.type, failed.data["reason"]) == ("TenantEraseFailed", "archive_unavailable")
    assert await bk.user_names(pg, tenant_id) == ["kept"]
    assert await bk.catalog(pg, tenant_id) == []
    assert await pg.fetchval(f"SELECT status FROM {ns.CONTROL}.tenants WHERE tenant_id = $1",
                             tenant_id) == "erasing"
