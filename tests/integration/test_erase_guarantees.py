"""Erase is terminal and idempotent across requests: an accepted erase holds at once, every later
erase answers with the first one's archive and deletes nothing it kept (a retried job included),
and a tenant role that owns things outside its schema is still erased cleanly."""

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts.envelope import Envelope
from contracts.events import (
    TenantDeactivated,
    TenantEraseRequested,
    TenantReactivated,
    TenantRequested,
)
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack

CONTROL = ns.CONTROL


@pytest.fixture(scope="module")
async def folder(settings: Settings, log_dir: Path, pg: asyncpg.Connection, tenants: TenantIds,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """Our backup worker: it runs the erase jobs and writes archives into this folder."""
    mine = len(tenants.ids)
    where = tmp_path_factory.mktemp("erase-guarantees")
    async with bk.backup_workers(settings, log_dir) as pool:
        await pool.start("eraser", {"TENANT_BACKUP_LOCAL_DIR": str(where)})
        yield where
    await bk.forget_backups(pg, tenants.ids[mine:])


async def _status(pg: asyncpg.Connection, tenant_id: str) -> str:
    return str(await pg.fetchval(
        f"SELECT status FROM {CONTROL}.tenants WHERE tenant_id = $1", tenant_id))


async def _block_jobs(pg: asyncpg.Connection, tenant_id: str) -> str:
    """A job of the tenant 'running' under a live lease: no runner starts another of its jobs."""
    blocker = f"b-blocker-{secrets.token_hex(6)}"
    await pg.execute(
        f"INSERT INTO {CONTROL}.backup_jobs (job_id, kind, tenant_id, cause_id, correlation_id,"
        " status, lease_owner, lease_until) VALUES ($1, 'backup', $2, $1, $1, 'running',"
        " 'tests', now() + interval '1 hour')", blocker, tenant_id)
    return blocker


async def _unblock(pg: asyncpg.Connection, blocker: str) -> None:
    await pg.execute(
        f"UPDATE {CONTROL}.backup_jobs SET status = 'succeeded', lease_owner = NULL,"
        " lease_until = NULL WHERE job_id = $1", blocker)


async def _kept_archive(pg: asyncpg.Connection, folder: Path, tenant_id: str,
                        archive_id: str) -> None:
    """The archive is still catalogued, alone, and its artifact is still on the target."""
    rows = await bk.catalog(pg, tenant_id)
    assert [r["backup_id"] for r in rows] == [archive_id]
    bk.assert_ours(rows[0]["uri"], folder.as_uri())
    assert bk.local_path(rows[0]["uri"]).exists()


async def test_an_accepted_erase_holds_and_every_later_erase_answers_the_first_archive(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["kept_in_archive"])
    blocker = await _block_jobs(pg, tenant_id)
    try:
        first = await bk.send(publisher, bk.envelope(
            TenantEraseRequested(tenant_id=tenant_id, archive=True)))
        undo: list[Envelope] = [
            await bk.send(publisher, bk.envelope(event)) for event in (
                TenantReactivated(tenant_id=tenant_id),
                TenantRequested(tenant_id=tenant_id, plan="free"),
                TenantDeactivated(tenant_id=tenant_id),
            )]
        # Asked while the first erase waits, without an archive: the first one's decision holds.
        second = await bk.send(publisher, bk.envelope(TenantEraseRequested(tenant_id=tenant_id)))

        got = await results.all_of([e.id for e in undo])

        resumed, requested, suspended = (got[e.id] for e in undo)
        assert (resumed.type, resumed.data["reason"]) == ("TenantResumeFailed", "erasing")
        assert (requested.type, requested.data["reason"]) == ("TenantProvisioningFailed",
                                                              "conflict")
        assert "erasing" in requested.data["detail"]
        assert (suspended.type, suspended.data["reason"]) == ("TenantSuspendFailed", "erasing")
        assert await _status(pg, tenant_id) == "erasing"
        assert not await bk.app_is_member(pg, tenant_id)
        # Consumed after the undo attempts (same partition): accepted, not answered, not erased.
        assert results.caused_by(first.id) == [] and results.caused_by(second.id) == []
        assert await bk.user_names(pg, tenant_id) == ["kept_in_archive"]
    finally:
        await _unblock(pg, blocker)

    done = await results.all_of([first.id, second.id], 120)

    archive_id = done[first.id].data["archive_backup_id"]
    assert done[first.id].type == "TenantErased" and archive_id, done[first.id].data
    assert done[second.id].type == "TenantErased", done[second.id].data
    assert done[second.id].data["archive_backup_id"] == archive_id
    await _kept_archive(pg, folder, tenant_id, archive_id)
    assert await _status(pg, tenant_id) == "erased"

    later = await bk.ask(publisher, results, TenantEraseRequested(tenant_id=tenant_id,
                                                                  archive=True), 90)

    assert later.type == "TenantErased" and later.data["archive_backup_id"] == archive_id
    await _kept_archive(pg, folder, tenant_id, archive_id)
    again = await bk.ask(publisher, results, TenantReactivated(tenant_id=tenant_id))
    assert (again.type, again.data["reason"]) == ("TenantResumeFailed", "erased")


async def test_erasing_twice_back_to_back_keeps_the_first_archive(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["archived"])
    first = await bk.send(publisher, bk.envelope(
        TenantEraseRequested(tenant_id=tenant_id, archive=True)))
    second = await bk.send(publisher, bk.envelope(
        TenantEraseRequested(tenant_id=tenant_id, archive=True)))

    done = await results.all_of([first.id, second.id], 120)

    assert [done[i].type for i in (first.id, second.id)] == ["TenantErased"] * 2, done
    archive_id = done[first.id].data["archive_backup_id"]
    assert archive_id and done[second.id].data["archive_backup_id"] == archive_id
    assert not any(x.startswith("backups:") for x in done[second.id].data["erased"])
    await _kept_archive(pg, folder, tenant_id, archive_id)


async def test_a_retried_erase_job_after_its_tombstone_keeps_the_archive(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    erased = await bk.ask(publisher, results,
                          TenantEraseRequested(tenant_id=tenant_id, archive=True), 90)
    assert erased.type == "TenantErased", erased.data
    archive_id = erased.data["archive_backup_id"]
    (job_id,) = [j["job_id"] for j in await bk.jobs_of(pg, tenant_id) if j["kind"] == "erase"]
    # As if the runner died after the tombstone committed, before it marked the job done.
    await pg.execute(f"UPDATE {CONTROL}.backup_jobs SET status = 'pending', not_before = now()"
                     " WHERE job_id = $1", job_id)

    async def rerun() -> bool:
        return bool(await pg.fetchval(
            f"SELECT 1 FROM {CONTROL}.backup_jobs WHERE job_id = $1 AND attempts = 2"
            " AND status IN ('succeeded', 'failed')", job_id))

    await wait_until(rerun, 90, what=f"erase job {job_id} to run again", interval=0.2)

    assert await pg.fetchval(f"SELECT status FROM {CONTROL}.backup_jobs WHERE job_id = $1",
                             job_id) == "succeeded"
    await _kept_archive(pg, folder, tenant_id, archive_id)


async def test_tenant_roles_cannot_create_large_objects(
    publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)

    for call in ("lo_from_bytea(0, 'x'::bytea)", "lo_create(0)", "lo_creat(-1)"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await bk.as_tenant(pg, tenant_id, f"SELECT {call}")


async def test_a_role_owning_things_outside_its_schema_is_erased_cleanly(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    role, elsewhere = f'"{ns.tenant(tenant_id)}"', f'"leak_{tenant_id}"'
    await bk.provision(publisher, results, tenant_id)
    # Arranged as the service role: a table in another schema and privileges on that schema
    # (large objects made before their creation was revoked would be dropped the same way).
    await pg.execute(f"CREATE SCHEMA {elsewhere}")
    try:
        await pg.execute(f"GRANT USAGE, CREATE ON SCHEMA {elsewhere} TO {role}")
        await pg.execute(f"CREATE TABLE {elsewhere}.kept (id int)")
        await pg.execute(f"ALTER TABLE {elsewhere}.kept OWNER TO {role}")

        erased = await bk.ask(publisher, results, TenantEraseRequested(tenant_id=tenant_id), 90)

        assert erased.type == "TenantErased", erased.data
        assert "outside_objects" in erased.data["erased"]
        assert not await pg.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1",
                                     ns.tenant(tenant_id))
        assert not await pg.fetchval(f"SELECT to_regclass('{elsewhere}.kept')")
    finally:
        await pg.execute(f"DROP SCHEMA {elsewhere} CASCADE")
