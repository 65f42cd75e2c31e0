"""tenantctl fails with one line on stderr and a documented exit code, never a traceback."""

import os

import pytest

from tests.support.cli import one_line_error, tenantctl
from tests.support.stack import SessionWorker, TenantIds

pytestmark = pytest.mark.stack


async def _provisioned(tenants: TenantIds) -> str:
    tenant_id = tenants.new()
    ran = await tenantctl("request", tenant_id, "--wait", "--timeout", "90")
    assert ran.code == 0, str(ran)
    return tenant_id


async def test_backup_verify_of_a_missing_backup_is_not_found(
    session_worker: SessionWorker, tenants: TenantIds
) -> None:
    tenant_id = await _provisioned(tenants)
    ran = await tenantctl("backup", "verify", tenant_id, "--backup", "b-doesnotexist")
    assert ran.code == 4, str(ran)
    assert "backup_not_found" in one_line_error(ran)


async def test_backup_verify_of_an_unknown_tenant_is_not_found(
    session_worker: SessionWorker,
) -> None:
    ran = await tenantctl("backup", "verify", "nosuch")
    assert ran.code == 4, str(ran)
    assert "unknown_tenant" in one_line_error(ran)


async def test_backup_verify_without_a_tenant_is_a_usage_error(
    session_worker: SessionWorker,
) -> None:
    ran = await tenantctl("backup", "verify")
    assert ran.code == 2, str(ran)
    assert "Missing argument" in ran.err and "published" not in ran.err + ran.out


async def test_migrate_to_a_version_with_no_migration_is_not_found(
    session_worker: SessionWorker,
) -> None:
    ran = await tenantctl("migrate", "--to", "99")
    assert ran.code == 4, str(ran)
    assert "99" in one_line_error(ran)
    debug = await tenantctl("--debug", "migrate", "--to", "99")
    assert debug.code == 4 and "Traceback" in debug.err, str(debug)


async def test_migrate_below_the_current_version_is_refused(
    session_worker: SessionWorker, tenants: TenantIds
) -> None:
    await _provisioned(tenants)  # new tenants start at the latest version (2 or more)
    ran = await tenantctl("migrate", "--to", "1")
    assert ran.code == 1, str(ran)
    assert "only go forward" in one_line_error(ran)


@pytest.mark.parametrize("command", ["status", "backups", "metrics"])
async def test_an_unknown_tenant_is_not_found(
    session_worker: SessionWorker, command: str
) -> None:
    ran = await tenantctl(command, "nosuch_tenant")
    assert ran.code == 4, str(ran)
    assert "nosuch_tenant" in one_line_error(ran)
    assert ran.out == ""


async def test_dlq_replay_of_a_bogus_id_fails(session_worker: SessionWorker) -> None:
    malformed = await tenantctl("dlq", "replay", "--id", "bogus")
    assert malformed.code == 2, str(malformed)
    assert "partition:offset" in one_line_error(malformed)
    missing = await tenantctl("dlq", "replay", "--id", "0:999999999")
    assert missing.code == 4, str(missing)
    assert "0:999999999" in one_line_error(missing)


async def test_outside_the_repository_the_error_says_where_env_was_looked_for(
    tmp_path: os.PathLike[str],
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_")}
    ran = await tenantctl("list", cwd=tmp_path, env=env)  # type: ignore[arg-type]
    assert ran.code == 2, str(ran)
    line = one_line_error(ran)
    assert "TENANT_PG_DSN" in line and f"no .env in {tmp_path}" in line


async def test_a_plan_conflict_names_the_existing_plan(
    session_worker: SessionWorker, tenants: TenantIds
) -> None:
    tenant_id = await _provisioned(tenants)  # on the default plan, free
    ran = await tenantctl("request", tenant_id, "--plan", "pro", "--wait", "--timeout", "90")
    assert ran.code == 1, str(ran)
    data = ran.json()["data"]
    assert data["reason"] == "conflict" and "'free', not 'pro'" in data["detail"], data
