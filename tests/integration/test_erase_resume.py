"""An erase whose worker is SIGKILLed half-way (some table batches dropped, the rest not) is
finished by the next runner: the schema, role and key go, and the request gets one result."""

# Table names are constants of the tests; values are bind parameters.
# ruff: noqa: S608

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

pytestmark = pytest.mark.stack

BATCH = 5
EXTRA = 20
#: by name, the erase drops documents, extra_00..extra_09 in two batches, then needs extra_10
HELD_TABLE = "extra_10"


async def _tables_left(pg: asyncpg.Connection, schema: str) -> int:
    return int(await pg.fetchval(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind = 'r'", schema))


async def _waiting_for(pg: asyncpg.Connection, schema: str, table: str) -> bool:
    return bool(await pg.fetchval(
        "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = $2 AND NOT l.granted", schema, table))


async def test_an_erase_killed_half_way_is_finished_by_the_next_runner(
    settings: Settings, log_dir: Path, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds, tmp_path: Path,
) -> None:
    tenant_id = tenants.new()
    schema = ns.tenant(tenant_id)
    await bk.provision(publisher, results, tenant_id)
    await pg.execute("".join(
        f'CREATE TABLE "{schema}".extra_{i:02d} (id int PRIMARY KEY);' for i in range(EXTRA)))
    before = await _tables_left(pg, schema)
    env = {"TENANT_BACKUP_LOCAL_DIR": str(tmp_path), "TENANT_ERASE_DROP_BATCH": str(BATCH)}
    holder = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        async with bk.backup_workers(settings, log_dir) as pool:
            # The test holds one table, so the erase stops half-way, inside a batch, for as
            # long as it takes to kill its worker there.
            hold = holder.transaction()
            await hold.start()
            await holder.execute(f'LOCK TABLE "{schema}".{HELD_TABLE} IN ACCESS SHARE MODE')
            first = await pool.start("killed-eraser", env)
            erase = await bk.send(publisher, bk.envelope(TenantEraseRequested(tenant_id=tenant_id)))

            async def half_way() -> bool:
                return (await _tables_left(pg, schema) == before - 2 * BATCH
                        and await _waiting_for(pg, schema, HELD_TABLE))

            await wait_until(half_way, 60, what="the erase half-way, waiting for a held table")
            await first.kill()
            await hold.rollback()
            assert results.caused_by(erase.id) == []
            assert await pg.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)

            await pool.start("resuming-eraser", env)
            done = await results.first(erase.id, 90)

            assert done.type == "TenantErased", done.data
            assert not await pg.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
            assert not await pg.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", schema)
            assert await bk.wrapped_identity(pg, tenant_id) is None
            assert await pg.fetchval(f"SELECT status FROM {ns.CONTROL}.tenants"
                                     " WHERE tenant_id = $1", tenant_id) == "erased"
            (job,) = [j for j in await bk.jobs_of(pg, tenant_id) if j["kind"] == "erase"]
            assert (job["status"], job["attempts"]) == ("succeeded", 2), dict(job)
            assert len(results.caused_by(erase.id)) == 1
            assert await pg.fetchval(
                f"SELECT count(*) FROM {ns.CONTROL}.outbox WHERE event_type = 'TenantErased'"
                " AND headers->>'ce_correlationid' = $1", erase.correlationid) == 1
    finally:
        await holder.close()
        await bk.forget_backups(pg, [tenant_id])
