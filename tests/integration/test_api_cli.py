"""tenantctl through the HTTP API: with TENANTCTL_API_URL and a token it needs no database
credentials (the DSN it is given here is wrong on purpose)."""

import asyncio
import json
import os
import sys

import pytest

from tests.support.api import ApiProcess, DevKeys
from tests.support.workers import REPO_ROOT

pytestmark = pytest.mark.stack


async def tenantctl(api: ApiProcess, token: str, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "TENANTCTL_API_URL": api.url,
        "TENANTCTL_TOKEN": token,
        "TENANT_PG_DSN": "postgresql://nobody:wrong@127.0.0.1:1/nothing",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tenantctl.cli",
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return int(proc.returncode or 0), out.decode()


async def test_tenantctl_requests_and_reads_through_the_api(
    api: ApiProcess, api_keys: DevKeys, tenants
) -> None:  # type: ignore[no-untyped-def]
    tenant_id = tenants.new()
    token = api_keys.token("cli-operator")
    code, out = await tenantctl(api, token, "request", tenant_id, "--wait", "--timeout", "60")
    assert code == 0, out
    assert '"type": "TenantProvisioned"' in out
    code, out = await tenantctl(api, token, "status", tenant_id, "--json")
    assert code == 0, out
    assert json.loads(out)["tenant_id"] == tenant_id
    code, out = await tenantctl(api, token, "list", "--json")
    assert code == 0 and tenant_id in {t["tenant_id"] for t in json.loads(out)}
    code, out = await tenantctl(api, api_keys.token("viewer", ["tenants:read"]), "request", "zzz_x")
    assert code == 2 and "403" in out
