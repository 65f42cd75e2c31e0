"""Restores are safe on every path: verify before execute, least privilege, a swap that happens
exactly once (fenced on the lease, resumed after a failure that follows it)."""

# Table names are constants of the tests; values are bind parameters.
# ruff: noqa: S608

import asyncio
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from adapters.migration_files import load_migrations
from adapters.postgres.backup_jobs import Job
from adapters.postgres.job_leases import PostgresJobLeases
from adapters.postgres.pool import create_pool
from adapters.postgres.tenant_store import tenant_lock_sql
from domain.errors import PermanentError, TransientError
from migrations import TENANT_DIR
from runtime.backup_wiring import BackupParts, build_backup_parts
from runtime.settings import Settings
from service.job_runner import JobRunner
from service.restores import Restorer
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def folder(settings: Settings, log_dir: Path, pg: asyncpg.Connection, tenants: TenantIds,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """Our backup worker (it takes the backups, and restores through Kafka); its folder."""
    mine = len(tenants.ids)
    path = tmp_path_factory.mktemp("restore-safety")
    async with bk.backup_workers(settings, log_dir) as pool:
        worker: WorkerProcess = await pool.start("safety", {"TENANT_BACKUP_LOCAL_DIR": str(path)})
        assert worker.running
        yield path
    await bk.forget_backups(pg, tenants.ids[mine:])


@pytest.fixture
async def parts(settings: Settings, folder: Path) -> AsyncIterator[BackupParts]:
    """The restore parts in this process, reading the worker's folder."""
    local = settings.model_copy(update={"backup_local_dir": folder, "backup_target": "local"})
    pool = await create_pool(local.pg_pool, max_size=4)
    try:
        built = await build_backup_parts(local, pool)
        assert built.restorer is not None, "the test settings must give the master identity file"
        yield built
    finally:
        await pool.close()


async def _backed_up(publisher: KafkaEventPublisher, results: ResultLog, folder: Path,
                     tenant_id: str) -> str:
    done = await bk.backup(publisher, results, tenant_id)
    assert done.type == "BackupCompleted", done.data
    bk.assert_ours(done.data["uri"], folder.as_uri())
    return str(done.data["backup_id"])


async def _probe(pg: asyncpg.Connection, *roles: str) -> str:
    """Sequences outside every tenant: nextval() survives a ROLLBACK, so they show execution
    (``seq``: anyone ran it; ``by_<role>``: that role did)."""
    name = f"restore_probe_{secrets.token_hex(4)}"
    await pg.execute(f'CREATE SCHEMA "{name}"')
    await pg.execute(f'GRANT USAGE ON SCHEMA "{name}" TO PUBLIC')
    for seq in ["seq", *(f"by_{r}" for r in roles)]:
        await pg.execute(f'CREATE SEQUENCE "{name}"."{seq}"')
        await pg.execute(f'GRANT USAGE, SELECT, UPDATE ON SEQUENCE "{name}"."{seq}" TO PUBLIC')
    return name


async def _plant(pg: asyncpg.Connection, tenant_id: str, probe: str) -> None:
    """State whose restore executes code: an index expression calling a (falsely) immutable
    function that bumps the probe and records who ran it, and a marker table."""
    schema = ns.tenant(tenant_id)
    await pg.execute(
        f'CREATE FUNCTION "{schema}".marker(i uuid) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $f$'
        f" DECLARE who text := format('%I.%I', '{probe}', 'by_' || current_user);"
        f" BEGIN PERFORM nextval('\"{probe}\".seq');"
        " IF to_regclass(who) IS NOT NULL THEN PERFORM nextval(who); END IF;"
        " RETURN i::text; END $f$")
    await pg.execute(f'CREATE TABLE "{schema}".marker_table (x int)')
    await pg.execute(f'INSERT INTO "{schema}".marker_table VALUES (1)')
    await pg.execute(f'CREATE INDEX marker_idx ON "{schema}".users ("{schema}".marker(id))')


async def _unplant(pg: asyncpg.Connection, tenant_id: str) -> None:
    schema = ns.tenant(tenant_id)
    await pg.execute(f'DROP TABLE "{schema}".marker_table')
    await pg.execute(f'DROP INDEX "{schema}".marker_idx')
    await pg.execute(f'DROP FUNCTION "{schema}".marker(uuid)')


async def _probe_calls(pg: asyncpg.Connection, probe: str, seq: str = "seq") -> bool:
    return bool(await pg.fetchval(f'SELECT is_called FROM "{probe}"."{seq}"'))


async def test_a_valid_artifact_of_another_state_is_refused_before_any_statement_runs(
    folder: Path, parts: BackupParts, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    probe = await _probe(pg)
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["kept"])
    genuine = await _backed_up(publisher, results, folder, tenant_id)
    await _plant(pg, tenant_id, probe)
    await bk.add_users(pg, tenant_id, ["planted"])
    await _backed_up(publisher, results, folder, tenant_id)
    await _unplant(pg, tenant_id)
    # Adding users ran the index function; only a restore may bump the probe from here on.
    await pg.execute(f'ALTER SEQUENCE "{probe}".seq RESTART')
    rows = {r["backup_id"]: r for r in await bk.catalog(pg, tenant_id)}
    other = next(b for b in rows if b != genuine)
    # The replacement: a real backup of another state, to the same tenant's recipient.
    shutil.copyfile(bk.local_path(rows[other]["uri"]), bk.local_path(rows[genuine]["uri"]))

    result = await bk.restore(publisher, results, tenant_id, genuine)

    assert result.type == "RestoreFailed", result.data
    assert result.data["reason"] == "checksum_mismatch"
    assert not await _probe_calls(pg, probe), "the server ran SQL from an unverified artifact"
    assert await pg.fetchval(
        "SELECT to_regclass($1)", f'"{ns.tenant(tenant_id)}".marker_table') is None
    assert await bk.user_names(pg, tenant_id) == ["kept", "planted"]

    assert parts.restorer is not None
    report = await parts.restorer.drill(tenant_id, genuine)

    assert report["ok"] is False and "checksum_mismatch" in str(report["error"])
    assert not await _probe_calls(pg, probe), "the drill ran SQL from an unverified artifact"


async def test_restored_sql_runs_as_the_restricted_restore_role(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds, settings: Settings,
) -> None:
    from service.restores import restore_role_name  # noqa: PLC0415

    role = restore_role_name(settings.names.control_schema)
    service = await pg.fetchval("SELECT current_user")
    tenant_id = tenants.new()
    probe = await _probe(pg, role, service)
    await bk.provision(publisher, results, tenant_id)
    await _plant(pg, tenant_id, probe)
    await bk.add_users(pg, tenant_id, ["one"])
    await _backed_up(publisher, results, folder, tenant_id)
    await pg.execute(f'ALTER SEQUENCE "{probe}"."by_{service}" RESTART')  # planting ran it

    result = await bk.restore(publisher, results, tenant_id)

    assert result.type == "RestoreCompleted", result.data
    # The dump's index expression ran during the restore, as the restore role and not as us.
    assert await _probe_calls(pg, probe, f"by_{role}")
    assert not await _probe_calls(pg, probe, f"by_{service}")
    powers = await pg.fetchrow(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = $1",
        role)
    assert powers is not None and not any(powers.values())
    assert not await pg.fetchval("SELECT pg_has_role($1, current_user, 'MEMBER')", role)
    # The restored objects belong to the service, as a freshly provisioned tenant's do.
    owners = await pg.fetch(
        "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
        ns.tenant(tenant_id))
    assert [r["owner"] for r in owners] == [await pg.fetchval("SELECT current_user")]
    assert await bk.user_names(pg, tenant_id) == ["one"]
    assert len(await bk.as_tenant(pg, tenant_id, f'SELECT * FROM "{ns.tenant(tenant_id)}".users')) == 1


async def _held_job(pg: asyncpg.Connection, tenant_id: str, owner: str, backup_id: str) -> Job:
    """A restore job under a live lease of ``owner`` (as if claimed; the worker skips it)."""
    job_id = f"r-{uuid.uuid4().hex}"
    await pg.execute(
        f"INSERT INTO {ns.CONTROL}.backup_jobs (job_id, kind, tenant_id, cause_id,"
        " correlation_id, backup_id, status, attempts, lease_owner, lease_until)"
        " VALUES ($1, 'restore', $2, $1, $1, $3, 'running', 1, $4, now() + interval '10 minutes')",
        job_id, tenant_id, backup_id, owner)
    return Job(job_id, "restore", tenant_id, job_id, job_id, backup_id, 1)


class _FailsForwardOnce(Restorer):
    """A failure after the swap committed: the forward migration fails once."""

    failed = False

    async def _migrate_forward(self, tenant_id: str) -> int:
        if not self.failed:
            self.failed = True
            raise TransientError("lock timeout in the forward migration (simulated)")
        return await super()._migrate_forward(tenant_id)


async def test_a_retry_after_the_committed_swap_resumes_and_never_swaps_again(
    folder: Path, parts: BackupParts, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["before"])
    backup_id = await _backed_up(publisher, results, folder, tenant_id)
    await bk.add_users(pg, tenant_id, ["gone"])
    assert parts.restorer is not None
    restorer = _FailsForwardOnce(**parts.restorer.arguments)
    job = await _held_job(pg, tenant_id, "test-runner", backup_id)

    with pytest.raises(TransientError):
        await restorer.restore(job, "test-runner")
    assert await bk.user_names(pg, tenant_id) == ["before"]
    await bk.add_users(pg, tenant_id, ["between"])  # written after the swap, before the retry

    result = await restorer.restore(job, "test-runner")

    assert result.backup_id == backup_id and result.schema_version == 2
    assert await bk.user_names(pg, tenant_id) == ["before", "between"]
    replaced = await pg.fetch(
        f"SELECT schema_name FROM {ns.CONTROL}.replaced_schemas WHERE tenant_id = $1", tenant_id)
    assert len(replaced) == 1


async def test_a_runner_whose_lease_was_taken_does_not_swap(
    folder: Path, parts: BackupParts, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["old"])
    backup_id = await _backed_up(publisher, results, folder, tenant_id)
    await bk.add_users(pg, tenant_id, ["live"])
    oid = await pg.fetchval("SELECT oid FROM pg_namespace WHERE nspname = $1", ns.tenant(tenant_id))
    job = await _held_job(pg, tenant_id, "the-new-holder", backup_id)
    assert parts.restorer is not None

    with pytest.raises(PermanentError) as failure:
        await parts.restorer.restore(job, "a-runner-that-lost-it")

    assert failure.value.reason == "lease_lost"
    assert await bk.user_names(pg, tenant_id) == ["live", "old"]
    assert await pg.fetchval(
        "SELECT oid FROM pg_namespace WHERE nspname = $1", ns.tenant(tenant_id)) == oid
    assert await pg.fetch(
        f"SELECT 1 FROM {ns.CONTROL}.replaced_schemas WHERE tenant_id = $1", tenant_id) == []


async def test_the_forward_migration_waits_under_the_migration_lock_timeout_not_the_pools(
    folder: Path, settings: Settings, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    first = [m for m in load_migrations(TENANT_DIR) if m.version == 1]
    async with pg.transaction():
        await ns.tenant_store().create(pg, tenant_id, "free", first)
    await bk.add_users(pg, tenant_id, ["old"])
    backup_id = await _backed_up(publisher, results, folder, tenant_id)
    # The pool's lock timeout is far shorter than the migration's: only the latter lets the
    # forward migration wait out a tenant transaction that is still running.
    local = settings.model_copy(update={
        "backup_local_dir": folder, "backup_target": "local", "pg_lock_timeout_ms": 100,
        "migration_lock_timeout_ms": 60_000})
    pool = await create_pool(local.pg_pool, max_size=4)
    holder = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        built = await build_backup_parts(local, pool)
        assert built.restorer is not None
        outer = holder

        class _Contended(Restorer):
            async def _migrate_forward(self, tenant_id: str) -> int:
                busy = outer.transaction()
                await busy.start()
                await outer.execute(tenant_lock_sql(tenant_id))  # a tenant transaction, running
                migrating = asyncio.create_task(super()._migrate_forward(tenant_id))
                try:
                    await wait_until(lambda: _advisory_waiters(pg), 30,
                                     what="the forward migration waiting for the tenant's lock"
                                     " for 10x the pool's lock timeout")
                finally:
                    await busy.commit()
                return await migrating

        restorer = _Contended(**built.restorer.arguments)
        job = await _held_job(pg, tenant_id, "test-runner", backup_id)

        result = await restorer.restore(job, "test-runner")

        assert result.schema_version == 2
        assert await bk.user_names(pg, tenant_id) == ["old"]
    finally:
        await holder.close()
        await pool.close()


async def _advisory_waiters(pg: asyncpg.Connection) -> int:
    """Sessions that have waited over a second (the pool's lock timeout is 100 ms) for a lock."""
    return int(await pg.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND NOT l.granted"
        " AND clock_timestamp() - a.query_start > interval '1 second'"))


async def test_a_runner_whose_renewals_hang_stops_its_psql_before_the_lease_lapses(
    folder: Path, parts: BackupParts, settings: Settings, publisher: KafkaEventPublisher,
    results: ResultLog, pg: asyncpg.Connection, tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["kept"])
    backup_id = await _backed_up(publisher, results, folder, tenant_id)
    assert parts.restorer is not None
    runner = JobRunner(
        uows=parts.restorer.arguments["uows"],
        leases=PostgresJobLeases(parts.restorer.arguments["uows"].pool, parts.jobs),
        taker=parts.taker, restorer=parts.restorer, eraser=None,  # type: ignore[arg-type]
        lease_s=6, poll_s=1, max_attempts=3, retry_base_s=1, retry_max_s=1, source="test")
    job = await _held_job(pg, tenant_id, runner.owner, backup_id)
    await pg.execute(f"UPDATE {ns.CONTROL}.backup_jobs SET lease_until = now() + interval '6 s'"
                     " WHERE job_id = $1", job.job_id)
    role = parts.restorer.arguments["control_schema"] + "_restore"  # type: ignore[union-attr]
    tenant_tx = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    row_tx = await asyncpg.connect(settings.pg_dsn.get_secret_value())
    try:
        # The restore's psql blocks on the tenant's lock; every renewal blocks on the job's row.
        busy = tenant_tx.transaction()
        await busy.start()
        await tenant_tx.execute(tenant_lock_sql(tenant_id))
        blocked = row_tx.transaction()
        await blocked.start()
        await row_tx.execute(
            f"SELECT 1 FROM {ns.CONTROL}.backup_jobs WHERE job_id = $1 FOR UPDATE", job.job_id)
        running = asyncio.create_task(runner.run_job(job))
        await wait_until(lambda: _sessions_of(pg, role), 30, what="the restore's psql session")

        await asyncio.wait_for(running, 30)  # the watchdog ended the job

        await wait_until(lambda: _no_sessions_of(pg, role), 30, what="the psql session gone")
        assert await row_tx.fetchval(
            f"SELECT lease_until > clock_timestamp() FROM {ns.CONTROL}.backup_jobs"
            " WHERE job_id = $1", job.job_id), "the job was stopped only after its lease lapsed"
        await blocked.rollback()
        await busy.rollback()
        assert await bk.user_names(pg, tenant_id) == ["kept"]
        assert await parts.jobs.swap_of(pg, job.job_id) is None
    finally:
        await tenant_tx.close()  # releases their locks, whatever failed
        await row_tx.close()
        await pg.execute(  # no one is to pick this job up after the test
            f"UPDATE {ns.CONTROL}.backup_jobs SET status = 'failed' WHERE job_id = $1", job.job_id)


async def _sessions_of(pg: asyncpg.Connection, role: str) -> int:
    return int(await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role))


async def _no_sessions_of(pg: asyncpg.Connection, role: str) -> bool:
    return await _sessions_of(pg, role) == 0
