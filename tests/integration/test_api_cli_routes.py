"""Every tenantctl command with an API route, run as an operator would with only
TENANTCTL_API_URL and a token: no TENANT_PG_* variable and no .env in sight (the working
directory is empty), so a database fallback could not even connect."""

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.support.api import ApiProcess, DevKeys
from tests.support.workers import REPO_ROOT

pytestmark = pytest.mark.stack
TENANTCTL = REPO_ROOT / ".venv" / "bin" / "tenantctl"


async def tenantctl(
    api: ApiProcess, token: str, cwd: Path, *args: str
) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANT_", "PG"))}
    env |= {"TENANTCTL_API_URL": api.url, "TENANTCTL_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        str(TENANTCTL),
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_every_api_command_runs_without_database_credentials(
    api: ApiProcess, api_keys: DevKeys, tenants, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    token = api_keys.token("cli-operator")

    async def run(*args: str) -> tuple[int, str, str]:
        return await tenantctl(api, token, tmp_path, *args)

    tenant_id = tenants.new()
    code, out, err = await run("request", tenant_id, "--wait", "--timeout", "60")
    assert code == 0 and json.loads(out)["result"]["type"] == "TenantProvisioned", (out, err)

    code, out, err = await run("deactivate", tenant_id, "--wait", "--timeout", "60")
    assert code == 0, (out, err)
    code, out, _ = await run("status", tenant_id, "--json")
    assert json.loads(out)["status"] == "suspended"
    code, out, _ = await run("list", "--json", "--status", "suspended")
    listed = json.loads(out)
    assert tenant_id in {t["tenant_id"] for t in listed}
    assert {t["status"] for t in listed} == {"suspended"}
    code, out, err = await run("status", tenant_id)  # the table: dates parsed from the API
    assert code == 0 and tenant_id in out, err

    code, out, err = await run("reactivate", tenant_id)  # no --wait: the event id, then wait
    assert code == 0, err
    operation = err.split()[0]
    assert operation.startswith("operations/") and out.strip() in err
    code, out, err = await run("operation", "wait", operation, "--timeout", "60")
    assert code == 0 and json.loads(out)["done"] is True, (out, err)
    code, out, _ = await run("status", tenant_id, "--json")
    assert json.loads(out)["status"] == "active"

    code, out, err = await run("events", tenant_id)
    types = [json.loads(line)["type"] for line in out.splitlines()]
    assert types == ["TenantProvisioned", "TenantSuspended", "TenantResumed"], (types, err)
    code, out, _ = await run("events", tenant_id, "--type", "TenantSuspended")
    assert [json.loads(line)["type"] for line in out.splitlines()] == ["TenantSuspended"]

    code, out, err = await run("backups", tenant_id, "--json")
    assert code == 0 and json.loads(out) == [], err
    code, out, err = await run("metrics", tenant_id, "--history", "5", "--json")
    assert code == 0 and json.loads(out) == [], err

    # A backup with no backup worker stays running: a second one conflicts (409).
    code, out, err = await run("backup", "create", tenant_id)
    assert code == 0 and out.strip(), err
    code, out, err = await run("backup", "create", tenant_id)
    assert code == 1 and "conflict (409)" in err, err
    code, out, err = await run("restore", tenant_id, "--backup", "latest")
    assert code == 1 and "conflict (409)" in err, err

    code, out, err = await run("migrate", "--no-wait")  # every tenant is at the latest version
    assert code == 1 and "conflict (409)" in err and "version" in err, err

    other = tenants.new()
    assert (await run("request", other, "--wait"))[0] == 0
    # Erasing is answered by the backup role, not in this module's session worker: the
    # command is accepted and its operation names the tenant.
    code, out, err = await run("erase", other, "--yes")
    assert code == 0 and out.strip(), err
    code, out, err = await run("operation", "get", err.split()[0])
    assert code == 0 and json.loads(out)["metadata"]["tenant_id"] == other, (out, err)

    # No API route: said plainly, nothing reaches for database settings.
    code, out, err = await run("top")
    assert code == 2 and "needs database access" in err, err
    # Refusals by the API: a read-only token, then a token the API never signed.
    reader = api_keys.token("viewer", ["tenants:read"])
    code, _, err = await tenantctl(api, reader, tmp_path, "erase", tenant_id, "--yes")
    assert code == 2 and "lacks the scope tenants:erase" in err, err
    code, _, err = await tenantctl(api, "not-a-jwt", tmp_path, "status", tenant_id)
    assert code == 2 and "token was refused" in err, err
