"""``tenantctl request <id> --wait`` publishes, waits for the result and prints it."""

import asyncio
import json
import re
import sys
from typing import Any

import pytest

from tests.support import names as ns
from tests.support.stack import SessionWorker, TenantIds
from tests.support.workers import REPO_ROOT

pytestmark = pytest.mark.stack


async def _tenantctl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tenantctl.cli", *args, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _printed(out: str, err: str) -> tuple[str, dict[str, Any]]:
    """(request id from stderr, result: all of stdout) from the command's output."""
    match = re.search(r"published TenantRequested id=(\S+)", err)
    assert match, err
    return match.group(1), json.loads(out)


async def test_request_wait_prints_tenant_provisioned(
    session_worker: SessionWorker, tenants: TenantIds
) -> None:
    tenant_id = tenants.new()
    code, out, err = await _tenantctl("request", tenant_id, "--wait", "--timeout", "60")

    assert code == 0, out + err
    request_id, result = _printed(out, err)
    assert result["type"] == "TenantProvisioned"
    assert result["causationid"] == request_id
    assert result["data"]["tenant_id"] == tenant_id
    assert result["data"]["schema_name"] == f"{ns.tenant(tenant_id)}"


async def test_request_wait_exits_1_on_a_refusal(
    session_worker: SessionWorker, tenants: TenantIds
) -> None:
    bad = tenants.track("Bad-Id")
    code, out, err = await _tenantctl("request", bad, "--wait", "--timeout", "60")

    assert code == 1, out + err
    _, result = _printed(out, err)
    assert (result["type"], result["data"]["reason"]) == (
        "TenantProvisioningFailed", "invalid_tenant_id",
    )
