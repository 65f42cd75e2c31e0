"""Backups through Kafka into a real target: artifact, manifest, catalog, stock-tool restore,
idempotency, unknown and suspended tenants, retention, retries."""

import asyncio
import hashlib
import json
import re
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters.kafka.producer import KafkaEventPublisher
from contracts.events import BackupDue, TenantDeactivated
from domain.job_ids import backup_id_for
from runtime.backup_target import backup_target
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import TenantIds
from tests.support.tcp_gate import TcpGate
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT, WorkerProcess, free_port

pytestmark = pytest.mark.stack


class Workers:
    """One backup worker at a time, so a test knows which target its job goes to."""

    def __init__(self, pool: bk.BackupWorkers, folder: Path) -> None:
        self._pool, self.folder = pool, folder
        self._by_name: dict[str, WorkerProcess] = {}

    async def only(self, name: str, env: dict[str, str] | None = None) -> WorkerProcess:
        for other, worker in self._by_name.items():
            if other != name and worker.running:
                await self._pool.stop(worker)
        current = self._by_name.get(name)
        if current is None or not current.running:
            current = await self._pool.start(name, {
                "TENANT_BACKUP_LOCAL_DIR": str(self.folder),
                "TENANT_BACKUP_RETENTION": "free=2/0/0,pro=7/14/8,enterprise=14/30/52",
                **(env or {}),
            })
            self._by_name[name] = current
        running = sum(w.running for w in self._by_name.values())
        await bk.wait_for_backup_group(self._pool._settings, ours=running)
        return current


@pytest.fixture(scope="module")
async def workers(settings: Settings, log_dir: Path, pg: asyncpg.Connection, tenants: TenantIds,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Workers]:
    mine = len(tenants.ids)
    async with bk.backup_workers(settings, log_dir) as pool:
        yield Workers(pool, tmp_path_factory.mktemp("backups"))
    await bk.forget_backups(pg, tenants.ids[mine:])


async def test_backup_is_encrypted_catalogued_and_restorable_with_stock_tools(
    workers: Workers, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds, tmp_path: Path,
) -> None:
    await workers.only("local")
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    marker = f"plaintext_marker_{secrets.token_hex(6)}"
    await bk.add_users(pg, tenant_id, [marker, "alice", "bob"])

    result = await bk.backup(publisher, results, tenant_id)

    assert result.type == "BackupCompleted", result.data
    data = result.data
    bk.assert_ours(data["uri"], workers.folder.as_uri())
    artifact = bk.local_path(data["uri"])
    assert artifact == workers.folder / tenant_id / f"{data['backup_id']}.dump.zst.age"
    blob = artifact.read_bytes()
    assert data["bytes"] == len(blob)
    assert data["sha256"] == hashlib.sha256(blob).hexdigest()
    assert marker.encode() not in blob and b"alice@example.test" not in blob
    manifest = bk.manifest_of(artifact)
    recipient = await pg.fetchval(
        f"SELECT recipient FROM {ns.CONTROL}.tenant_keys WHERE tenant_id = $1", tenant_id)
    assert manifest["tenant_id"] == tenant_id and manifest["backup_id"] == data["backup_id"]
    assert manifest["schema_version"] == 2
    assert (manifest["bytes"], manifest["sha256"]) == (data["bytes"], data["sha256"])
    assert manifest["pg_dump_version"].startswith("pg_dump")
    assert manifest["recipients"] == [recipient]
    assert manifest["row_counts"] == {"documents": 0, "projects": 0, "users": 3}
    (row,) = await bk.catalog(pg, tenant_id)
    assert (row["backup_id"], row["uri"], row["bytes"], row["sha256"]) == (
        data["backup_id"], data["uri"], data["bytes"], data["sha256"])
    # The README's recipe: unwrap the tenant identity with the master key, then stock tools.
    wrapped = await bk.wrapped_identity(pg, tenant_id)
    assert wrapped is not None
    identity = bk.write_identity(tmp_path, bk.unwrap(wrapped))
    listing = bk.stock_restore_list(artifact, identity)
    assert listing.returncode == 0, listing.stderr
    for table in ("users", "projects", "documents"):
        assert f"TABLE {ns.tenant(tenant_id)} {table} " in listing.stdout


async def test_same_backup_due_twice_makes_one_backup(
    workers: Workers, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    await workers.only("local")
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    due = bk.envelope(BackupDue(tenant_id=tenant_id))
    await bk.send(publisher, due)
    await bk.send(publisher, due)
    first = await results.first(due.id, 90)
    # A later request on the same key is consumed after both copies: then the copy was seen.
    later = await bk.backup(publisher, results, tenant_id)

    assert first.type == later.type == "BackupCompleted"
    assert len(results.caused_by(due.id)) == 1
    ids = [r["backup_id"] for r in await bk.catalog(pg, tenant_id)]
    assert sorted(ids) == sorted([backup_id_for(due.id), later.data["backup_id"]])
    assert [j["cause_id"] for j in await bk.jobs_of(pg, tenant_id)].count(due.id) == 1


async def test_unknown_tenant_is_a_backup_failed(
    workers: Workers, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    await workers.only("local")
    tenant_id = tenants.new()  # never provisioned

    result = await bk.backup(publisher, results, tenant_id)

    assert result.type == "BackupFailed"
    assert result.data == {"tenant_id": tenant_id, "reason": "unknown_tenant", "attempts": 0}
    assert await bk.jobs_of(pg, tenant_id) == [] and await bk.catalog(pg, tenant_id) == []


async def test_suspended_tenant_is_still_backed_up(
    workers: Workers, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    await workers.only("local")
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    suspended = await bk.ask(publisher, results, TenantDeactivated(tenant_id=tenant_id))
    assert suspended.type == "TenantSuspended"

    result = await bk.backup(publisher, results, tenant_id)

    assert result.type == "BackupCompleted", result.data
    assert len(await bk.catalog(pg, tenant_id)) == 1


async def test_retention_keeps_the_last_n_and_deletes_expired_artifacts(
    workers: Workers, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    await workers.only("local")  # free=2/0/0
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id, plan="free")
    done = [await bk.backup(publisher, results, tenant_id) for _ in range(3)]
    assert [d.type for d in done] == ["BackupCompleted"] * 3
    for d in done:
        bk.assert_ours(d.data["uri"], workers.folder.as_uri())
    oldest = bk.local_path(done[0].data["uri"])

    await wait_until(lambda: not oldest.exists(), 10, what="expired artifact deleted")

    kept = [r["backup_id"] for r in await bk.catalog(pg, tenant_id)]
    assert kept == [done[1].data["backup_id"], done[2].data["backup_id"]]
    assert not oldest.with_name(oldest.name.replace(".dump.zst.age", ".manifest.json")).exists()
    assert all(bk.local_path(d.data["uri"]).exists() for d in done[1:])


@pytest.mark.parametrize("kind", ["s3", "sftp"])
async def test_backup_to_remote_target(
    kind: str, workers: Workers, publisher: KafkaEventPublisher, results: ResultLog,
    pg: asyncpg.Connection, tenants: TenantIds, settings: Settings,
) -> None:
    prefix = f"tests-{secrets.token_hex(4)}"
    env = {"TENANT_BACKUP_TARGET": kind}
    overrides: dict[str, object] = {"backup_target": kind}
    if kind == "s3":
        env |= {"TENANT_S3_PREFIX": prefix, "TENANT_S3_CREATE_BUCKET": "true"}
        overrides |= {"s3_prefix": prefix, "s3_create_bucket": True}
    else:
        remote = f"{settings.sftp_dir}/{prefix}"
        env |= {"TENANT_SFTP_DIR": remote}
        overrides |= {"sftp_dir": remote}
    await workers.only(f"{kind}-{prefix}", env)
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)

    result = await bk.backup(publisher, results, tenant_id)

    assert result.type == "BackupCompleted", result.data
    bk.assert_ours(result.data["uri"], f"{kind}://")
    target = await backup_target(settings.model_copy(update=overrides))
    try:
        key = f"{tenant_id}/{result.data['backup_id']}.dump.zst.age"
        assert await target.list(f"{tenant_id}/") == sorted(
            [key, key.replace(".dump.zst.age", ".manifest.json")])
        blob = b"".join([c async for c in target.read(key)])
        assert hashlib.sha256(blob).hexdigest() == result.data["sha256"]
        for name in await target.list(""):
            await target.delete(name)
    finally:
        await target.close()
    assert len(await bk.catalog(pg, tenant_id)) == 1


async def test_dead_target_exhausts_retries_and_catalogues_nothing(
    workers: Workers, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds, settings: Settings,
) -> None:
    await workers.only("sftp-dead", {
        "TENANT_BACKUP_TARGET": "sftp", "TENANT_SFTP_PORT": str(free_port()),
        "TENANT_BACKUP_MAX_ATTEMPTS": "2",
    })
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)

    result = await bk.backup(publisher, results, tenant_id)

    assert result.type == "BackupFailed"
    assert result.data == {"tenant_id": tenant_id, "reason": "retries_exhausted", "attempts": 2}
    assert await bk.catalog(pg, tenant_id) == []
    (job,) = await bk.jobs_of(pg, tenant_id)
    assert (job["status"], job["attempts"], job["lease_owner"]) == ("failed", 2, None)


async def test_transient_target_failure_is_retried_then_succeeds(
    workers: Workers, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds, settings: Settings,
) -> None:
    """S3 behind a port that refuses connections until we open a relay to the real endpoint."""
    assert settings.s3_endpoint_url
    upstream_port = int(settings.s3_endpoint_url.rsplit(":", 1)[1])
    port = free_port()
    prefix = f"tests-{secrets.token_hex(4)}"
    await workers.only(f"s3-flaky-{prefix}", {
        "TENANT_BACKUP_TARGET": "s3", "TENANT_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        # The bucket exists (the test above made it); asking to create it would make start-up
        # itself call the dead endpoint, and the worker exits on that.
        "TENANT_S3_PREFIX": prefix, "TENANT_S3_CREATE_BUCKET": "false",
        "TENANT_BACKUP_MAX_ATTEMPTS": "10", "TENANT_BACKUP_RETRY_BASE_S": "0.5",
    })
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    due = await bk.send(publisher, bk.envelope(BackupDue(tenant_id=tenant_id)))

    async def failed_once() -> bool:
        jobs = await bk.jobs_of(pg, tenant_id)
        return bool(jobs) and jobs[0]["last_error"] is not None

    await wait_until(failed_once, 60, what="a failed first attempt", interval=0.2)
    gate = TcpGate(port, ("127.0.0.1", upstream_port))
    await gate.open()
    try:
        result = await results.first(due.id, 90)
    finally:
        await gate.close()
    assert result.type == "BackupCompleted", result.data
    bk.assert_ours(result.data["uri"], "s3://")
    (job,) = await bk.jobs_of(pg, tenant_id)
    assert job["status"] == "succeeded" and job["attempts"] >= 2
    assert len(await bk.catalog(pg, tenant_id)) == 1
    target = await backup_target(settings.model_copy(
        update={"backup_target": "s3", "s3_prefix": prefix}))
    try:
        for name in await target.list(""):
            await target.delete(name)
    finally:
        await target.close()


async def _idle_runner(workers: Workers, pg: asyncpg.Connection) -> None:
    """A worker that accepts requests but whose runner sleeps: the jobs stay waiting."""
    await workers.only("idle", {"TENANT_BACKUP_POLL_INTERVAL_S": "3600"})

    async def nothing_claimable() -> bool:  # the idle runner's first pass is over: it sleeps
        return not await pg.fetchval(
            f"SELECT count(*) FROM {ns.CONTROL}.backup_jobs WHERE not_before <= now()"
            " AND (status = 'pending' OR (status = 'running' AND lease_until < now()))")

    await wait_until(nothing_claimable, 60, what="no job left to claim", interval=0.2)


async def _accepted(pg: asyncpg.Connection, event_ids: list[str]) -> bool:
    n = await pg.fetchval(
        f"SELECT count(*) FROM {ns.CONTROL}.inbox WHERE consumer_group = 'tenant-backup'"
        " AND event_id = ANY($1::text[])", event_ids)
    return bool(n == len(event_ids))


async def test_requests_waiting_for_the_same_tenant_share_one_backup(
    workers: Workers, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    await _idle_runner(workers, pg)
    busy, other = tenants.new(), tenants.new()
    for t in (busy, other):
        await bk.provision(publisher, results, t)
    burst = [await bk.send(publisher, bk.envelope(BackupDue(tenant_id=busy))) for _ in range(3)]
    alone = await bk.send(publisher, bk.envelope(BackupDue(tenant_id=other)))
    asked = [e.id for e in (*burst, alone)]
    await wait_until(lambda: _accepted(pg, asked), 60, what="all four accepted", interval=0.2)

    host = backup_id_for(burst[0].id)
    jobs = {t: [j["job_id"] for j in await bk.jobs_of(pg, t)] for t in (busy, other)}
    assert jobs == {busy: [host], other: [backup_id_for(alone.id)]}
    riders = await pg.fetch(f"SELECT cause_id, job_id FROM {ns.CONTROL}.backup_job_riders"
                            " WHERE job_id = $1 ORDER BY created_at", host)
    assert [(r["cause_id"], r["job_id"]) for r in riders] == [(e.id, host) for e in burst[1:]]

    await workers.only("local")  # a runner that works: it takes the two waiting jobs
    done = await results.all_of(asked, 120)

    answers = [done[e.id] for e in burst]
    assert [a.type for a in answers] == ["BackupCompleted"] * 3, [a.data for a in answers]
    assert {a.data["backup_id"] for a in answers} == {host}  # one backup answers all three
    assert [(a.causationid, a.correlationid) for a in answers] == [
        (e.id, e.correlationid) for e in burst]
    assert len({a.id for a in answers}) == 3  # three results, each its own event
    assert all(len(results.caused_by(e.id)) == 1 for e in burst)
    assert done[alone.id].type == "BackupCompleted"
    assert done[alone.id].data["backup_id"] == backup_id_for(alone.id)
    assert [r["backup_id"] for r in await bk.catalog(pg, busy)] == [host]


async def test_tenantctl_backup_wait_follows_the_job_it_rode_on(
    workers: Workers, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    await _idle_runner(workers, pg)
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    first = await bk.send(publisher, bk.envelope(BackupDue(tenant_id=tenant_id)))
    await wait_until(lambda: _accepted(pg, [first.id]), 60, what="the first accepted", interval=0.2)
    host = backup_id_for(first.id)
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tenantctl.cli", "backup", "create", tenant_id, "--wait",
        "--timeout", "120",
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async def rode() -> bool:
            return bool(await pg.fetchval(
                f"SELECT count(*) FROM {ns.CONTROL}.backup_job_riders WHERE job_id = $1", host))

        await wait_until(rode, 60, what="the CLI's request riding on the waiting job",
                         interval=0.2)
        await workers.only("local")
        out, err = await asyncio.wait_for(cli.communicate(), 150)
    finally:
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
    text = out.decode()
    assert cli.returncode == 0, text + err.decode()
    request_id = re.search(r"published BackupDue id=(\S+)", err.decode())
    assert request_id, err.decode()
    result = json.loads(text)
    assert (result["type"], result["causationid"]) == ("BackupCompleted", request_id.group(1))
    assert result["data"]["backup_id"] == host
