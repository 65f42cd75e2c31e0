"""Backups on S3 and SFTP, beyond the target contract: a restore reads its artifact back from
the remote target, and retention of dailies and weeklies deletes the expired artifacts there.

Each test runs one backup worker of its own on a fresh prefix (S3) or folder (SFTP); its
result URI must name that place, or the test fails (another worker took the job)."""

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from adapters.backup_targets.base import BackupTarget
from adapters.backup_targets.sftp import SftpBackupTarget
from adapters.kafka.producer import KafkaEventPublisher
from runtime.backup_target import backup_target
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import TenantIds
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack


@dataclass
class Remote:
    kind: str
    env: dict[str, str]
    target: BackupTarget
    workers: bk.BackupWorkers

    async def keys(self, tenant_id: str) -> list[str]:
        return await self.target.list(f"{tenant_id}/")

    def assert_ours(self, uri: str) -> None:
        where = self.env.get("TENANT_S3_PREFIX") or self.env["TENANT_SFTP_DIR"]
        assert uri.startswith(f"{self.kind}://") and where in uri, f"not our {where}: {uri}"


@pytest.fixture(params=["s3", "sftp"])
async def remote(
    request: pytest.FixtureRequest,
    settings: Settings,
    log_dir: Path,
    pg: asyncpg.Connection,
    tenants: TenantIds,
) -> AsyncIterator[Remote]:
    kind: str = request.param
    prefix = f"remote-{secrets.token_hex(4)}"
    env = {"TENANT_BACKUP_TARGET": kind}
    overrides: dict[str, object] = {"backup_target": kind}
    if kind == "s3":
        env |= {"TENANT_S3_PREFIX": prefix, "TENANT_S3_CREATE_BUCKET": "true"}
        overrides |= {"s3_prefix": prefix, "s3_create_bucket": True}
    else:
        env |= {"TENANT_SFTP_DIR": f"{settings.sftp_dir}/{prefix}"}
        overrides |= {"sftp_dir": f"{settings.sftp_dir}/{prefix}"}
    mine = len(tenants.ids)
    target = await backup_target(settings.model_copy(update=overrides))
    try:
        async with bk.backup_workers(settings, log_dir) as pool:
            yield Remote(kind, env, target, pool)
        for name in await target.list(""):
            await target.delete(name)
        if isinstance(target, SftpBackupTarget):  # deleting files leaves their folders
            sftp = await target._client()  # the test peeks below the port on purpose
            root = f"{settings.sftp_dir}/{prefix}"
            if await sftp.isdir(root):
                await sftp.rmtree(root)
    finally:
        await target.close()
        await bk.forget_backups(pg, tenants.ids[mine:])


async def test_a_restore_reads_its_backup_back_from_the_remote_target(
    remote: Remote,
    publisher: KafkaEventPublisher,
    results: ResultLog,
    pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    await remote.workers.start(f"restore-{remote.kind}", remote.env)
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["alice", "bob"])
    done = await bk.backup(publisher, results, tenant_id)
    assert done.type == "BackupCompleted", done.data
    remote.assert_ours(done.data["uri"])
    assert f"{tenant_id}/{done.data['backup_id']}.dump.zst.age" in await remote.keys(tenant_id)
    await bk.as_tenant(pg, tenant_id, f'DELETE FROM "{ns.tenant(tenant_id)}".users')
    await bk.add_users(pg, tenant_id, ["carol"])

    result = await bk.restore(publisher, results, tenant_id)

    assert result.type == "RestoreCompleted", result.data
    assert result.data["backup_id"] == done.data["backup_id"]
    assert await bk.user_names(pg, tenant_id) == ["alice", "bob"]


async def test_dailies_and_weeklies_expire_on_the_remote_target(
    remote: Remote,
    publisher: KafkaEventPublisher,
    results: ResultLog,
    pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    keep_all = await remote.workers.start(
        f"keep-{remote.kind}", {**remote.env, "TENANT_BACKUP_RETENTION": "free=20/0/0"}
    )
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id, plan="free")
    done = [await bk.backup(publisher, results, tenant_id) for _ in range(4)]
    assert [d.type for d in done] == ["BackupCompleted"] * 4, [d.data for d in done]
    for d in done:
        remote.assert_ours(d.data["uri"])
    # Backdate the catalogue: what retention reads. Yesterday's noon is one UTC day's newest.
    yesterday_noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - (
        timedelta(days=1)
    )
    ages = {
        "month_old": yesterday_noon - timedelta(days=29),  # past every horizon: expires
        "week_old": yesterday_noon - timedelta(days=9),  # alone in its ISO week: a weekly
        "day_dup": yesterday_noon - timedelta(hours=1),  # older than its day's newest: expires
        "daily": yesterday_noon,  # its day's newest: a daily
    }
    ids = dict(zip(ages, (d.data["backup_id"] for d in done), strict=True))
    for name, finished in ages.items():
        await pg.execute(
            f"UPDATE {ns.CONTROL}.backups SET finished_at = $2 WHERE backup_id = $1",
            ids[name],
            finished,
        )
    assert await remote.workers.stop(keep_all) == 0
    # last 1, dailies over 3 days, weeklies over 2 weeks
    await remote.workers.start(
        f"expire-{remote.kind}", {**remote.env, "TENANT_BACKUP_RETENTION": "free=1/3/2"}
    )

    newest = await bk.backup(publisher, results, tenant_id)

    assert newest.type == "BackupCompleted", newest.data
    remote.assert_ours(newest.data["uri"])
    kept = {ids["week_old"], ids["daily"], newest.data["backup_id"]}
    assert {r["backup_id"] for r in await bk.catalog(pg, tenant_id)} == kept
    expected = sorted(
        f"{tenant_id}/{b}.{ext}" for b in kept for ext in ("dump.zst.age", "manifest.json")
    )

    async def only_kept_remain() -> bool:
        return await remote.keys(tenant_id) == expected

    await wait_until(only_kept_remain, 30, what="expired artifacts deleted from the target")
