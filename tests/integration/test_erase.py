"""Erase (GDPR off-boarding): everything of the tenant gone, its key destroyed, a tombstone left,
idempotent; an optional archive readable with the operator key only; big schemas."""

import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from adapters.kafka.producer import KafkaEventPublisher
from contracts.events import TenantEraseRequested, TenantRequested
from runtime.settings import Settings
from tests.support import backups as bk
from tests.support import names as ns
from tests.support.kafka import ResultLog
from tests.support.stack import TenantIds

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def folder(settings: Settings, log_dir: Path, pg: asyncpg.Connection, tenants: TenantIds,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """Our backup worker (it runs erase jobs), dropping tables 50 per transaction."""
    mine = len(tenants.ids)
    where = tmp_path_factory.mktemp("erase")
    async with bk.backup_workers(settings, log_dir) as pool:
        await pool.start("eraser", {"TENANT_BACKUP_LOCAL_DIR": str(where),
                                    "TENANT_ERASE_DROP_BATCH": "50"})
        yield where
    await bk.forget_backups(pg, tenants.ids[mine:])


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(settings.redis_url.get_secret_value())
    yield client
    await client.aclose()


async def test_erase_removes_everything_and_shreds_earlier_backups(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds, redis: aioredis.Redis, tmp_path: Path,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["gone"])
    earlier = await bk.backup(publisher, results, tenant_id)
    assert earlier.type == "BackupCompleted", earlier.data
    bk.assert_ours(earlier.data["uri"], folder.as_uri())
    artifact = bk.local_path(earlier.data["uri"])
    copy = Path(shutil.copy(artifact, tmp_path / "offsite.dump.zst.age"))
    # Before the erase the copy is readable: the master unwraps the tenant's key row, and that
    # key opens it. The crypto-shredding check below is only worth something because of this.
    wrapped = await bk.wrapped_identity(pg, tenant_id)
    assert wrapped is not None, "the tenant has no backup key row"
    tenant_key = bk.write_identity(tmp_path, bk.unwrap(wrapped))
    before = bk.stock_restore_list(copy, tenant_key)
    assert before.returncode == 0, before.stderr
    assert f"TABLE {ns.tenant(tenant_id)} users " in before.stdout
    await redis.set(f"{ns.REDIS}{tenant_id}:session", "x")
    await redis.set(f"{ns.REDIS}{tenant_id}:metrics", "y")
    other = f"{ns.REDIS}{tenant_id}x:keep"  # a different tenant's key with the same prefix
    await redis.set(other, "z")
    pending = f"b-pending-{secrets.token_hex(6)}"
    await pg.execute(
        f"INSERT INTO {ns.CONTROL}.backup_jobs (job_id, kind, tenant_id, cause_id,"
        " correlation_id, not_before) VALUES ($1, 'backup', $2, $1, $1, now() + interval '1 hour')",
        pending, tenant_id)

    erased = await bk.ask(publisher, results, TenantEraseRequested(tenant_id=tenant_id), 90)

    try:
        assert erased.type == "TenantErased", erased.data
        assert erased.data["archive_backup_id"] is None
        assert {"schema", "role", "backup_key", "redis_keys:2", "backups:1"} <= set(
            erased.data["erased"])
        assert not await pg.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1",
                                     f"{ns.tenant(tenant_id)}")
        assert not await pg.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1",
                                     f"{ns.tenant(tenant_id)}")
        assert await bk.wrapped_identity(pg, tenant_id) is None
        assert await bk.catalog(pg, tenant_id) == []
        assert not artifact.exists()
        assert await redis.keys(f"{ns.REDIS}{tenant_id}:*") == []
        assert await redis.get(other) == b"z"
        row = await pg.fetchrow(f"SELECT * FROM {ns.CONTROL}.tenants WHERE tenant_id = $1",
                                tenant_id)
        assert (row["status"], row["plan"]) == ("erased", "")
        # The job that was waiting is not dropped silently: when its time comes it answers.
        await pg.execute(f"UPDATE {ns.CONTROL}.backup_jobs SET not_before = now()"
                         " WHERE job_id = $1", pending)
        answer = await results.first(pending, 60)
        assert (answer.type, answer.data["reason"]) == ("BackupFailed", "unknown_tenant")
        # The copy that left the building: only the tenant's key opened it, and that key can no
        # longer be obtained: its wrapped row is gone, under this tenant or any other, and
        # neither the master nor the operator key opens the copy in its place.
        assert not await pg.fetchval(
            f"SELECT 1 FROM {ns.CONTROL}.tenant_keys WHERE tenant_id = $1"
            " OR wrapped_identity = $2", tenant_id, wrapped)
        master_try = bk.stock_restore_list(copy, bk.MASTER_KEY)
        operator_try = bk.stock_restore_list(copy, bk.OPERATOR_KEY)
        assert master_try.returncode != 0 and operator_try.returncode != 0
    finally:
        await redis.delete(other)

    again = await bk.ask(publisher, results, TenantEraseRequested(tenant_id=tenant_id))
    assert again.type == "TenantErased"
    reused = await bk.ask(publisher, results, TenantRequested(tenant_id=tenant_id, plan="free"))
    assert reused.type == "TenantProvisioningFailed" and reused.data["reason"] == "conflict"


async def test_erase_with_archive_keeps_one_backup_under_the_operator_key(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds, tmp_path: Path,
) -> None:
    tenant_id = tenants.new()
    await bk.provision(publisher, results, tenant_id)
    await bk.add_users(pg, tenant_id, ["archived"])
    ordinary = await bk.backup(publisher, results, tenant_id)  # the tenant gets its key
    assert ordinary.type == "BackupCompleted", ordinary.data

    wrapped = await bk.wrapped_identity(pg, tenant_id)
    assert wrapped is not None, "the tenant has no backup key row"
    tenant_key = bk.write_identity(tmp_path, bk.unwrap(wrapped))

    erased = await bk.ask(publisher, results,
                          TenantEraseRequested(tenant_id=tenant_id, archive=True), 90)

    assert erased.type == "TenantErased", erased.data
    archive_id = erased.data["archive_backup_id"]
    assert archive_id and "archived" in erased.data["erased"]
    (row,) = await bk.catalog(pg, tenant_id)
    assert row["backup_id"] == archive_id
    bk.assert_ours(row["uri"], folder.as_uri())
    listing = bk.stock_restore_list(bk.local_path(row["uri"]), bk.OPERATOR_KEY)
    assert listing.returncode == 0, listing.stderr
    assert f"TABLE {ns.tenant(tenant_id)} users " in listing.stdout
    # The operators' keys only: neither the tenant's own key (kept from before the erase) nor
    # the backup master opens it.
    for other in (tenant_key, bk.MASTER_KEY):
        refused = bk.stock_restore_list(bk.local_path(row["uri"]), other)
        assert refused.returncode != 0 and "TABLE" not in refused.stdout, other
    assert not await pg.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1",
                                 f"{ns.tenant(tenant_id)}")


async def test_erase_of_a_schema_with_hundreds_of_tables_succeeds(
    folder: Path, publisher: KafkaEventPublisher, results: ResultLog, pg: asyncpg.Connection,
    tenants: TenantIds,
) -> None:
    tenant_id = tenants.new()
    schema = f'"{ns.tenant(tenant_id)}"'
    await bk.provision(publisher, results, tenant_id)
    await pg.execute("".join(
        f"CREATE TABLE {schema}.extra_{i} (id int PRIMARY KEY, ref uuid REFERENCES {schema}.users);"
        for i in range(300)))

    erased = await bk.ask(publisher, results, TenantEraseRequested(tenant_id=tenant_id), 120)

    assert erased.type == "TenantErased", erased.data
    assert not await pg.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1",
                                 f"{ns.tenant(tenant_id)}")

