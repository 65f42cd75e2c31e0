"""A table whose count(*) outlasts the pool's statement timeout no longer fails the backup: the
manifest's exact counts run under their own budget, and a table that does not fit it is given
an estimate, flagged as such. The slow count is made by a lock the test holds on the table."""

from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts.events import BackupDue
from domain.tenant_ids import quote_ident
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack

ENV = {
    "TENANT_PG_STATEMENT_TIMEOUT_MS": "1000",  # far below the count's time behind the lock
    "TENANT_BACKUP_COUNT_BUDGET_MS": "3000",  # its own budget, longer than the pool's timeout
    "TENANT_BACKUP_MAX_ATTEMPTS": "2",
}


async def _dump_waits_on_a_lock(pg: asyncpg.Connection) -> bool:
    return bool(await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'"
        " AND wait_event_type = 'Lock'"))


async def test_a_table_slower_to_count_than_the_statement_timeout_is_backed_up(
    settings: Settings, log_dir: Path, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds, tmp_path: Path,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["ada", "bob"])
    await pg.execute("ANALYZE " + quote_ident(ns.tenant(tenant_id)) + ".users")
    blocker = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    locked, held = blocker.transaction(), False
    try:
        async with bk.backup_workers(settings, log_dir) as pool:
            await pool.start("counts", {**ENV, "TENANT_BACKUP_LOCAL_DIR": str(tmp_path)})
            await locked.start()
            held = True
            await blocker.execute(
                f"LOCK TABLE {quote_ident(ns.tenant(tenant_id))}.users IN ACCESS EXCLUSIVE MODE")
            env = await bk.send(publisher, bk.envelope(BackupDue(tenant_id=tenant_id)))

            async def dump_blocked_or_answered() -> str | None:
                if results.caused_by(env.id):
                    return "answered: " + str(results.caused_by(env.id)[0].data)
                return "dump waits" if await _dump_waits_on_a_lock(pg) else None

            # Past the counts, the dump itself waits for our lock; before the fix the count
            # hit the pool's timeout on every attempt and the backup failed instead.
            assert await wait_until(dump_blocked_or_answered, 90,
                                    what="the dump to start") == "dump waits"
            await locked.rollback()
            held = False
            done = await results.first(env.id, 90)

            assert done.type == "BackupCompleted", done.data
            manifest = bk.manifest_of(bk.local_path(done.data["uri"]))
            assert manifest["row_counts"] == {"documents": 0, "projects": 0}
            assert manifest["row_counts_estimated"] == {"users": 2}
    finally:
        if held:
            await locked.rollback()
        await blocker.close()
        await bk.forget_backups(pg, [tenant_id])
