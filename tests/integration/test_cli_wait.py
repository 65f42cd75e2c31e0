"""``--wait`` on a request that was dead-lettered says so at once and names the entry."""

from pathlib import Path

import pytest

from tests.support.cli import RFC3339, tenantctl, times_in
from tests.support.stack import SessionWorker, TenantIds
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.stack


async def test_wait_names_the_dead_letter_of_its_request(
    session_worker: SessionWorker, tenants: TenantIds, log_dir: Path
) -> None:
    # A backup worker that finds every event too old: the request is dead-lettered
    # (time_out_of_range) and no result will ever come.
    worker = WorkerProcess(
        ("backup",), log_dir / "cli-wait-backup.log", env={"TENANT_EVENT_MAX_AGE_S": "0.001"}
    )
    await worker.start()
    try:
        ran = await tenantctl(
            "backup", "create", tenants.new(), "--wait", "--timeout", "150", limit_s=200
        )
    finally:
        await worker.terminate(60)
    assert ran.code == 1, str(ran)  # 3 would mean it waited for the timeout
    letter = ran.json()
    assert letter["reason"] == "time_out_of_range", letter
    assert "Traceback" not in ran.err, str(ran)
    line = ran.err.strip().splitlines()[-1]
    assert "dead-lettered" in line and letter["id"] in line, line


async def test_metrics_collect_runs_a_tick_for_the_tenant(
    session_worker: SessionWorker, tenants: TenantIds, log_dir: Path
) -> None:
    tenant_id = tenants.new()
    assert (await tenantctl("request", tenant_id, "--wait", "--timeout", "90")).code == 0
    before = await tenantctl("metrics", tenant_id, "--json")
    assert before.code == 4 and before.out == "", str(before)
    assert "next tick is due at" in before.err and "--collect" in before.err, str(before)

    worker = WorkerProcess(("metrics",), log_dir / "cli-metrics.log")
    await worker.start()
    try:
        ran = await tenantctl("metrics", tenant_id, "--collect", "--json", "--timeout", "120")
    finally:
        await worker.terminate(60)
    assert ran.code == 0, str(ran)
    snapshot = ran.json()
    assert snapshot["tenant_id"] == tenant_id
    for key, value in times_in(snapshot):
        assert value is None or RFC3339.match(value), (key, value)
